"""The running batch's passes through transformers' forward against the direct ones
(`workers/engine/forward.py`).

    .venv/bin/python -m bench.decode_step [--model DIR] [--rows 20] [--tokens 32] [--rounds 6]
                                          [--join 3]

One process, the two ways alternately, `--rounds` times each: milliseconds per decode step of a
running batch of `--rows` greedy rows decoding `--tokens` tokens each (no EOS), and per admission
of `--join` rows at a time into a batch filling up to `--rows` rows (a prefill and the merge of
its cache, as the loop admits between steps), with the ratio of the direct pass to the forward's
per round and median. The tokens of both ways are compared.
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


def admissions(lm: LoadedModel, rows: int, join: int, *, direct: bool) -> float:
    """Milliseconds per admission of `join` rows into a batch filling up to `rows` rows."""
    sampling = SamplingParams(0.0, 1.0, 1_000, ignore_eos=True)  # no row leaves meanwhile
    requests = [GenerationRequest(p, RowPolicy(), sampling) for p in prompts(rows)]
    joining = [Joining(i, r, lm.encode(r.prompt)) for i, r in enumerate(requests)]
    batch = RunningBatch(lm)
    batch._direct = direct
    groups = [joining[i : i + join] for i in range(0, rows, join)]
    began = time.perf_counter()
    for group in groups:
        batch.admit(group)
    return (time.perf_counter() - began) / len(groups) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "var/models/tiny")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--join", type=int, default=3, help="rows per admission")
    args = parser.parse_args()
    lm = load_model(args.model, dtype="float32")
    run(lm, 4, 4, direct=True)  # warm-up
    rounds = []
    for _ in range(args.rounds):
        forward_ms, forward_tokens = run(lm, args.rows, args.tokens, direct=False)
        direct_ms, direct_tokens = run(lm, args.rows, args.tokens, direct=True)
        if direct_tokens != forward_tokens:
            raise SystemExit("the direct step made other tokens than the forward")
        admit_forward = admissions(lm, args.rows, args.join, direct=False)
        admit_direct = admissions(lm, args.rows, args.join, direct=True)
        rounds.append(
            {
                "forward_ms": round(forward_ms, 3),
                "direct_ms": round(direct_ms, 3),
                "admit_forward_ms": round(admit_forward, 3),
                "admit_direct_ms": round(admit_direct, 3),
            }
        )
        print(
            f"step: forward {forward_ms:.3f} ms, direct {direct_ms:.3f} ms; admission of "
            f"{args.join}: forward {admit_forward:.3f} ms, direct {admit_direct:.3f} ms",
            flush=True,
        )
    ratios = [r["direct_ms"] / r["forward_ms"] for r in rounds]
    admit_ratios = [r["admit_direct_ms"] / r["admit_forward_ms"] for r in rounds]
    out = {
        "model": args.model.name,
        "rows": args.rows,
        "tokens": args.tokens,
        "join": args.join,
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
        "direct_over_forward": [round(x, 3) for x in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
        "admission_direct_over_forward": [round(x, 3) for x in admit_ratios],
        "admission_median_ratio": round(statistics.median(admit_ratios), 3),
    }
    print(f"direct / forward per step: median {out['median_ratio']} ({out['direct_over_forward']})")
    print(
        f"direct / forward per admission: median {out['admission_median_ratio']} "
        f"({out['admission_direct_over_forward']})"
    )
    save_results(f"decode-step-{args.model.name}.json", out)


if __name__ == "__main__":
    main()
