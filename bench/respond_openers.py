"""Pilot: what banning refusal openers after `[respond]` does to the demo's answers.

    .venv/bin/python -m bench.respond_openers [--prompts 240] [--tokens 32]

The demo answers after `[respond]` from the prompt alone, with its base model's weights, so its
served answers are SmolLM2-135M-Instruct's greedy answers, with or without the manifest's
banned openers (`workers/engine/openers.py`, the demo recipe's `respond_banned_openers`). For the
first held-out respond prompts of the demo's data this counts the answers whose text refuses
(`core.refusal_text`, a phrase match), the first 100's answers kept over 16 tokens (the model
card's figure), and saves every answer the ban changed, for a human to read: a phrase match
cannot tell whether a changed answer refuses in other words. The probe's hand-written respond
prompts (`workers/training/probe.py`) are a second set, which the openers were not chosen on.
Saved to bench/results/respond-openers.json.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bench.saving import save_results
from core.categories import RESPOND
from core.refusal_text import refuses_in_text
from core.settings import PROJECT_ROOT
from workers.engine.openers import OpenerBan
from workers.training.answers_kept import (
    KEPT_PROMPTS,
    KEPT_TOKENS,
    greedy_tokens,
    heldout_respond_prompts,
)
from workers.training.base_model import ensure_base_model
from workers.training.demo import RECIPE, demo_examples
from workers.training.probe import PROBE


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prompts", type=int, default=240)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    base = ensure_base_model(PROJECT_ROOT / "var/models/smollm2-base")
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    ban = OpenerBan.from_texts(tok, RECIPE.respond_banned_openers)
    results: dict[str, Any] = {
        "tokens": args.tokens,
        "openers": list(RECIPE.respond_banned_openers),
    }
    sets = {
        "heldout": heldout_respond_prompts(demo_examples(0, RECIPE)[1], limit=args.prompts),
        "probe": [p.text for p in PROBE if p.label == RESPOND],
    }
    for name, prompts in sets.items():
        results[name] = compare(model, tok, prompts, ban, args.tokens)
        r = results[name]
        print(
            f"{name}: refusing in the text {r['without_ban']['refused_in_text']}/{len(prompts)} "
            f"without the ban, {r['with_ban']['refused_in_text']} with it; answers kept "
            f"{r['answers_kept_first_100']}/{min(KEPT_PROMPTS, len(prompts))}; "
            f"{len(r['changed'])} answers changed",
            flush=True,
        )
    save_results("respond-openers.json", results)


def compare(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: list[str],
    ban: OpenerBan,
    tokens: int,
) -> dict[str, Any]:
    """Greedy answers to `prompts` without and with the ban, compared."""
    plain = greedy_tokens(model, tok, prompts, max_new_tokens=tokens)
    banned = greedy_tokens(model, tok, prompts, max_new_tokens=tokens, ban=ban)

    def arm(rows: list[list[int]]) -> dict[str, Any]:
        texts = [tok.decode(r, skip_special_tokens=True).strip() for r in rows]
        flagged = [refuses_in_text(t) for t in texts]
        return {
            "refused_in_text": sum(flagged),
            "rate": round(sum(flagged) / len(rows), 4),
            "first_60": sum(flagged[:60]),
            "texts": texts,
        }

    without, with_ban = arm(plain), arm(banned)
    kept = sum(
        a[:KEPT_TOKENS] == b[:KEPT_TOKENS]
        for a, b in zip(plain[:KEPT_PROMPTS], banned[:KEPT_PROMPTS], strict=True)
    )
    changed = [
        {"prompt": p, "without": a, "with_ban": b}
        for p, a, b in zip(prompts, without["texts"], with_ban["texts"], strict=True)
        if a != b
    ]
    return {
        "prompts": len(prompts),
        "without_ban": {k: v for k, v in without.items() if k != "texts"},
        "with_ban": {k: v for k, v in with_ban.items() if k != "texts"},
        "answers_kept_first_100": kept,
        "changed": changed,
    }


if __name__ == "__main__":
    main()
