"""The category registry: the refusal categories a model can emit, and the respond token.

The five categories are the CoCoNot taxonomy used by Jain et al. (arXiv 2412.06748). A model
directory carries a manifest (`refusal_tokens.json`) mapping each category to its token and id,
or to null when the model has no token for it (that category is then never refused);
`RefusalManifest` parses and checks it without touching the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CATEGORIES: tuple[str, ...] = ("incomplete", "unsupported", "indeterminate", "humanizing", "safety")
RESPOND = "respond"
#: The six first-token classes: every category, then respond.
CLASSES: tuple[str, ...] = (*CATEGORIES, RESPOND)
MANIFEST_FILENAME = "refusal_tokens.json"


class UnknownCategory(ValueError):
    """A category name that is not in the registry."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown category {name!r}; known: {', '.join(CATEGORIES)}")
        self.name = name


class InvalidManifest(ValueError):
    """A refusal-token manifest that cannot be served (missing, duplicate or unknown entries)."""


def token_for(name: str) -> str:
    """The control token text of a category or of `respond`, e.g. ``[safety]``."""
    if name not in CLASSES:
        raise UnknownCategory(name)
    return f"[{name}]"


def category_index(name: str) -> int:
    """Position of a category in `CATEGORIES` (the column order of every per-category array)."""
    try:
        return CATEGORIES.index(name)
    except ValueError:
        raise UnknownCategory(name) from None


@dataclass(frozen=True)
class RefusalManifest:
    """Token ids of the control tokens of one model, in `CATEGORIES` order, plus `[respond]`.

    A category the model has no token for (a model with fewer refusal tokens, e.g. one
    `[refuse]` token served as one category) has token and id None: it is never refused and its
    probability is 0. At least one category has a token.
    """

    category_tokens: tuple[str | None, ...]
    category_ids: tuple[int | None, ...]
    respond_token: str
    respond_id: int
    #: False for a model whose answers are its unchanged base model's (a refusal head on frozen
    #: weights): `[respond]` is still the first token of the answer, but the answer is decoded
    #: from the prompt alone, as the base model answers it, not with `[respond]` in its context.
    respond_in_context: bool = True
    #: Tokens appended to every prompt for the first step only (a learned query the control
    #: tokens' output rows read); the answer is decoded without them. Empty for most models.
    decision_tokens: tuple[str, ...] = ()
    decision_ids: tuple[int, ...] = ()
    #: Texts a `[respond]` answer may not open with (the model's own refusal openers, such as
    #: "I'm sorry"): the engine bans them at the answer's start (`workers/engine/openers.py`).
    respond_banned_openers: tuple[str, ...] = ()

    @property
    def served(self) -> tuple[str, ...]:
        """The categories that have a token, in `CATEGORIES` order."""
        return tuple(c for c, i in zip(CATEGORIES, self.category_ids, strict=True) if i is not None)

    @property
    def all_ids(self) -> tuple[int, ...]:
        """Ids of every control token the model has: served categories, then respond."""
        return (*(i for i in self.category_ids if i is not None), self.respond_id)

    @property
    def class_of_id(self) -> dict[int, str]:
        """Control token id -> class name (a served category or `respond`)."""
        return dict(zip(self.all_ids, (*self.served, RESPOND), strict=True))

    def to_json(self) -> dict[str, Any]:
        entries = zip(CATEGORIES, self.category_tokens, self.category_ids, strict=True)
        return {
            "categories": {c: None if i is None else {"token": t, "id": i} for c, t, i in entries},
            "respond": {"token": self.respond_token, "id": self.respond_id},
            **({} if self.respond_in_context else {"respond_in_context": False}),
            **(
                {
                    "decision_suffix": [
                        {"token": t, "id": i}
                        for t, i in zip(self.decision_tokens, self.decision_ids, strict=True)
                    ]
                }
                if self.decision_ids
                else {}
            ),
            **(
                {"respond_banned_openers": list(self.respond_banned_openers)}
                if self.respond_banned_openers
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: Any, *, vocab_size: int | None = None) -> RefusalManifest:
        """Parse ``{"categories": {name: {"token", "id"} | null}, "respond": {"token", "id"}}``.

        Every registry category must be named exactly once, with its token or with null when the
        model has none (explicit, so a forgotten entry is an error and not a silent opt-out); at
        least one has a token. Ids must be distinct integers and, when `vocab_size` is given,
        inside the vocabulary.
        """
        if not isinstance(data, dict) or "categories" not in data or "respond" not in data:
            raise InvalidManifest("manifest needs the keys 'categories' and 'respond'")
        cats = data["categories"]
        if not isinstance(cats, dict):
            raise InvalidManifest("'categories' must be an object of category -> {token, id}")
        unknown = sorted(set(cats) - set(CATEGORIES))
        missing = [c for c in CATEGORIES if c not in cats]
        if unknown:
            raise InvalidManifest(f"unknown categories in manifest: {unknown}")
        if missing:
            raise InvalidManifest(
                f"categories missing from manifest: {missing} (null marks a category the model "
                "has no token for)"
            )
        if all(cats[c] is None for c in CATEGORIES):
            raise InvalidManifest("the manifest needs a token for at least one category")
        entries = [(c, cats[c]) for c in CATEGORIES] + [(RESPOND, data["respond"])]
        tokens: list[str | None] = []
        ids: list[int | None] = []
        for name, entry in entries:
            if entry is None and name != RESPOND:
                tokens.append(None)
                ids.append(None)
                continue
            token, tid = _token_entry(name, entry, vocab_size)
            tokens.append(token)
            ids.append(tid)
        suffix = data.get("decision_suffix", [])
        if not isinstance(suffix, list):
            raise InvalidManifest("'decision_suffix' must be a list of {token, id}")
        decision = [
            _token_entry(f"decision_suffix[{n}]", e, vocab_size) for n, e in enumerate(suffix)
        ]
        present_ids = [i for i in ids if i is not None] + [i for _, i in decision]
        present_tokens = [t for t in tokens if t is not None] + [t for t, _ in decision]
        if len(set(present_ids)) != len(present_ids):
            raise InvalidManifest(f"duplicate token ids in manifest: {present_ids}")
        if len(set(present_tokens)) != len(present_tokens):
            raise InvalidManifest(f"duplicate tokens in manifest: {present_tokens}")
        respond_token, respond_id = tokens[-1], ids[-1]
        assert respond_token is not None and respond_id is not None  # respond may not be null
        in_context = data.get("respond_in_context", True)
        if not isinstance(in_context, bool):
            raise InvalidManifest("'respond_in_context' must be true or false")
        openers = data.get("respond_banned_openers", [])
        if not isinstance(openers, list) or not all(isinstance(o, str) and o for o in openers):
            raise InvalidManifest("'respond_banned_openers' must be a list of non-empty strings")
        return cls(
            tuple(tokens[:-1]),
            tuple(ids[:-1]),
            respond_token,
            respond_id,
            in_context,
            tuple(t for t, _ in decision),
            tuple(i for _, i in decision),
            tuple(openers),
        )


def _token_entry(name: str, entry: Any, vocab_size: int | None) -> tuple[str, int]:
    """(token, id) of one manifest entry ``{"token": str, "id": int}``, checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        raise InvalidManifest(f"entry {name!r} needs a string 'token'")
    tid = entry.get("id")
    if not isinstance(tid, int) or isinstance(tid, bool) or tid < 0:
        raise InvalidManifest(f"entry {name!r} needs a non-negative integer 'id'")
    if vocab_size is not None and tid >= vocab_size:
        raise InvalidManifest(f"entry {name!r}: id {tid} is outside the vocabulary ({vocab_size})")
    return entry["token"], tid
