"""Decode steps through transformers' forward against the direct step (`decode_step.py`).

    .venv/bin/python -m bench.decode_step [--model DIR] [--rows 20] [--tokens 32] [--rounds 6]

One process, one running batch of `--rows` greedy rows decoding `--tokens` tokens each (no EOS),
the two ways alternately, `--rounds` times each: milliseconds per decode step and the ratio of
the direct step to the forward's, per round and median. The tokens of both ways are compared.
Saves bench/results/decode-step-<model>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.engine import prompts
from bench.saving import save_results
from core.settings import PROJECT_ROOT
from workers.engine.continuous import Joining, RunningBatch
from workers.engine.model import LoadedModel, load_model
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams


def run(lm: LoadedModel, rows: int, tokens: int, *, direct: bool) -> tuple[float, list[tuple]]:
    """Milliseconds per decode step of one batch of `rows` rows, and their tokens."""
    sampling = SamplingParams(0.0, 1.0, tokens, ignore_eos=True)
    requests = [GenerationRequest(p, RowPolicy(), sampling) for p in prompts(rows)]
    batch = RunningBatch(lm)
    batch._direct = direct
    batch.admit([Joining(i, r, lm.encode(r.prompt)) for i, r in enumerate(requests)])
    results: dict[int, tuple] = {}
    steps, began = 0, time.perf_counter()
    while len(batch):
        for event in batch.step():
            if event.result is not None:
                results[event.key] = event.result.token_ids
        steps += 1
    return (time.perf_counter() - began) / steps * 1e3, [results[k] for k in sorted(results)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "var/models/tiny")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    lm = load_model(args.model, dtype="float32")
    run(lm, 4, 4, direct=True)  # warm-up
    rounds = []
    for _ in range(args.rounds):
        forward_ms, forward_tokens = run(lm, args.rows, args.tokens, direct=False)
        direct_ms, direct_tokens = run(lm, args.rows, args.tokens, direct=True)
        if direct_tokens != forward_tokens:
            raise SystemExit("the direct step made other tokens than the forward")
        rounds.append({"forward_ms": round(forward_ms, 3), "direct_ms": round(direct_ms, 3)})
        print(f"forward {forward_ms:.3f} ms, direct {direct_ms:.3f} ms a step", flush=True)
    ratios = [r["direct_ms"] / r["forward_ms"] for r in rounds]
    out = {
        "model": args.model.name,
        "rows": args.rows,
        "tokens": args.tokens,
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
        "direct_over_forward": [round(x, 3) for x in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
    }
    print(f"direct / forward per step: median {out['median_ratio']} ({out['direct_over_forward']})")
    save_results(f"decode-step-{args.model.name}.json", out)


if __name__ == "__main__":
    main()
