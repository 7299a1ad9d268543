"""`rcs model register DIR`: write and check `refusal_tokens.json` for a model with refusal tokens.

For a transformers model trained elsewhere that already has refusal tokens (the paper's released
models, a single `[refuse]` token model, ...). Each category is mapped to its token by a known
layout (`--layout`), by `--token CATEGORY=TOKEN` flags, or both (flags win); categories left out
get null (the model has no token for them: never refused, probability 0). Every token must be
a single token id of the model's tokenizer, checked by the same rule the worker applies at load
(`workers.engine.model.check_manifest_tokens`), before anything is written.

`run_register_command(argv)` is the entry point wired into `cli.py`; it returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from core.categories import CATEGORIES, MANIFEST_FILENAME, RESPOND, InvalidManifest, RefusalManifest

#: Known token layouts: class -> token text.
LAYOUTS: dict[str, dict[str, str]] = {
    # The released models of Jain et al. (arXiv 2412.06748): each token follows a leading space.
    "paper": {
        "incomplete": " [Incomplete requests]",
        "unsupported": " [Unsupported requests]",
        "indeterminate": " [Indeterminate requests]",
        "humanizing": " [Humanizing requests]",
        "safety": " [Requests with safety concerns]",
        RESPOND: " [respond]",
    },
    # This project's own models (`rcs model train`).
    "rcs": {c: f"[{c}]" for c in (*CATEGORIES, RESPOND)},
}


class RegisterError(ValueError):
    """A model directory or token mapping that cannot be registered."""


def _category_token(text: str) -> tuple[str, str]:
    name, sep, token = text.partition("=")
    if not sep or not token:
        raise argparse.ArgumentTypeError(f"expected CATEGORY=TOKEN, got {text!r}")
    if name not in CATEGORIES:
        raise argparse.ArgumentTypeError(
            f"unknown category {name!r}; known: {', '.join(CATEGORIES)}"
        )
    return name, token


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rcs model register",
        description="Write refusal_tokens.json for a transformers model that already has "
        "refusal tokens, after checking each is a single token of its tokenizer.",
    )
    parser.add_argument("model_dir", type=Path, metavar="DIR", help="the model directory")
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        help="a known layout: 'paper' (the paper's released models: ' [Incomplete requests]', "
        "..., ' [respond]') or 'rcs' ('[incomplete]', ..., '[respond]')",
    )
    parser.add_argument(
        "--token",
        type=_category_token,
        action="append",
        default=[],
        metavar="CATEGORY=TOKEN",
        help="the token of a category (repeatable; overrides the layout's)",
    )
    parser.add_argument("--respond-token", metavar="TOKEN", help="the respond token")
    parser.add_argument(
        "--respond-outside-context",
        action="store_true",
        help="decode the answer after the respond token from the prompt alone (a refusal head "
        "on an unchanged base model: its answers are the base model's)",
    )
    parser.add_argument(
        "--decision-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token of the decision suffix, appended to every prompt for the first step only "
        "(repeatable, in order; the demo recipe's model has '[query1]')",
    )
    parser.add_argument(
        "--ban-respond-opener",
        action="append",
        default=[],
        metavar="TEXT",
        help='text an answer after the respond token may not open with, such as "I\'m sorry" '
        "(repeatable; the model's own refusal openers)",
    )
    parser.add_argument(
        "--force", action="store_true", help=f"replace an existing {MANIFEST_FILENAME}"
    )
    return parser


def token_mapping(
    layout: str | None, tokens: list[tuple[str, str]], respond: str | None
) -> dict[str, str]:
    """Class -> token text from a layout and flags (flags win); raises `RegisterError`."""
    mapping = dict(LAYOUTS[layout]) if layout else {}
    mapping.update(tokens)
    if respond is not None:
        mapping[RESPOND] = respond
    if RESPOND not in mapping:
        raise RegisterError("no respond token: give --respond-token TOKEN or --layout")
    if not any(c in mapping for c in CATEGORIES):
        raise RegisterError("no category token: give --token CATEGORY=TOKEN or --layout")
    return mapping


def build_manifest(
    model_dir: Path, mapping: Mapping[str, str], decision_tokens: Sequence[str] = ()
) -> RefusalManifest:
    """The manifest of `mapping` (and of a decision suffix) for the model in `model_dir`, checked
    as the worker checks it."""
    from transformers import AutoConfig, AutoTokenizer

    from workers.engine.model import ModelLoadError, check_manifest_tokens

    if not (model_dir / "config.json").is_file():
        raise RegisterError(f"{model_dir}: not a model directory (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise RegisterError(f"{model_dir}: cannot load the tokenizer or config: {exc}") from None

    def entry(name: str, token: str) -> dict[str, object]:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise RegisterError(
                f"{name}: {token!r} is not a single token of {model_dir.name}'s tokenizer "
                f"(it encodes to {len(ids)} ids {ids})"
            )
        return {"token": token, "id": ids[0]}

    entries = {
        name: None if mapping.get(name) is None else entry(name, mapping[name])
        for name in (*CATEGORIES, RESPOND)
    }
    data: dict[str, object] = {
        "categories": {c: entries[c] for c in CATEGORIES},
        "respond": entries[RESPOND],
    }
    if decision_tokens:
        data["decision_suffix"] = [entry("decision token", t) for t in decision_tokens]
    try:
        manifest = RefusalManifest.from_json(
            data, vocab_size=int(config.get_text_config().vocab_size)
        )
        check_manifest_tokens(manifest, tokenizer, model_dir.name)
    except (InvalidManifest, ModelLoadError) as exc:
        raise RegisterError(str(exc)) from None
    return manifest


def register(
    model_dir: Path,
    mapping: Mapping[str, str],
    *,
    force: bool = False,
    respond_in_context: bool = True,
    decision_tokens: Sequence[str] = (),
    banned_openers: Sequence[str] = (),
) -> RefusalManifest:
    """Check `mapping` against the model and write its `refusal_tokens.json`."""
    path = model_dir / MANIFEST_FILENAME
    if path.exists() and not force:
        raise RegisterError(f"{path} exists; use --force to replace it")
    if any(not text.strip() for text in banned_openers):
        raise RegisterError("--ban-respond-opener needs a non-empty text")
    manifest = replace(
        build_manifest(model_dir, mapping, decision_tokens),
        respond_in_context=respond_in_context,
        respond_banned_openers=tuple(banned_openers),
    )
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return manifest


def run_register_command(argv: list[str]) -> int:
    """Parse `argv` (after `rcs model register`), register, print a summary; return an exit code."""
    args = build_parser().parse_args(argv)  # exits with status 2 and a usage message
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        mapping = token_mapping(args.layout, args.token, args.respond_token)
        manifest = register(
            args.model_dir,
            mapping,
            force=args.force,
            respond_in_context=not args.respond_outside_context,
            decision_tokens=args.decision_token,
            banned_openers=args.ban_respond_opener,
        )
    except RegisterError as exc:
        print(f"rcs model register: error: {exc}", file=sys.stderr)
        return 2
    for name, token, tid in zip(
        CATEGORIES, manifest.category_tokens, manifest.category_ids, strict=True
    ):
        shown = f"{token!r} (id {tid})" if tid is not None else "no token: never refused"
        print(f"{name:<14} {shown}")
    where = "in" if manifest.respond_in_context else "outside"
    print(
        f"{RESPOND:<14} {manifest.respond_token!r} (id {manifest.respond_id}), answer decoded {where} its context"
    )
    if manifest.decision_tokens:
        print(f"{'decision':<14} {list(manifest.decision_tokens)!r} after every prompt")
    if manifest.respond_banned_openers:
        openers = list(manifest.respond_banned_openers)
        print(f"{'openers':<14} {openers!r} banned at the start of a respond answer")
    print(f"wrote {args.model_dir / MANIFEST_FILENAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_register_command(sys.argv[1:]))
