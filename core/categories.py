"""The category registry: the refusal categories a model can emit, and the respond token.

The five categories are the CoCoNot taxonomy used by Jain et al. (arXiv 2412.06748). A model
directory carries a manifest (`refusal_tokens.json`) mapping each category to its token and id;
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
    """Token ids of the control tokens of one model, in `CATEGORIES` order, plus `[respond]`."""

    category_tokens: tuple[str, ...]
    category_ids: tuple[int, ...]
    respond_token: str
    respond_id: int

    @property
    def all_ids(self) -> tuple[int, ...]:
        return (*self.category_ids, self.respond_id)

    def to_json(self) -> dict[str, Any]:
        entries = dict(
            zip(CATEGORIES, zip(self.category_tokens, self.category_ids, strict=True), strict=True)
        )
        return {
            "categories": {c: {"token": t, "id": i} for c, (t, i) in entries.items()},
            "respond": {"token": self.respond_token, "id": self.respond_id},
        }

    @classmethod
    def from_json(cls, data: Any, *, vocab_size: int | None = None) -> RefusalManifest:
        """Parse ``{"categories": {name: {"token", "id"}}, "respond": {"token", "id"}}``.

        Every registry category must be present exactly once, ids must be distinct integers and,
        when `vocab_size` is given, inside the vocabulary.
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
            raise InvalidManifest(f"categories missing from manifest: {missing}")
        entries = [(c, cats[c]) for c in CATEGORIES] + [(RESPOND, data["respond"])]
        tokens: list[str] = []
        ids: list[int] = []
        for name, entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
                raise InvalidManifest(f"entry {name!r} needs a string 'token'")
            tid = entry.get("id")
            if not isinstance(tid, int) or isinstance(tid, bool) or tid < 0:
                raise InvalidManifest(f"entry {name!r} needs a non-negative integer 'id'")
            if vocab_size is not None and tid >= vocab_size:
                raise InvalidManifest(
                    f"entry {name!r}: id {tid} is outside the vocabulary ({vocab_size})"
                )
            tokens.append(entry["token"])
            ids.append(tid)
        if len(set(ids)) != len(ids):
            raise InvalidManifest(f"duplicate token ids in manifest: {ids}")
        if len(set(tokens)) != len(tokens):
            raise InvalidManifest(f"duplicate tokens in manifest: {tokens}")
        return cls(tuple(tokens[:-1]), tuple(ids[:-1]), tokens[-1], ids[-1])
