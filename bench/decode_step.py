"""The running batch's passes three ways: transformers' forward, the direct passes calling the
decoder's blocks as modules (`workers/engine/forward.py`), and the direct passes with the blocks
as tensor operations (`workers/engine/llama_blocks.py`, the engine's default).

    .venv/bin/python -m bench.decode_step [--model DIR] [--rows 20] [--tokens 32] [--rounds 6]
                                          [--join 3]

One process, the three ways in turn, `--rounds` times each: milliseconds per decode step of a
running batch of `--rows` greedy rows decoding `--tokens` tokens each (no EOS), and per admission
of `--join` rows at a time into a batch filling up to `--rows` rows (a prefill and the merge of
its cache, as the loop admits between steps), with the ratios of the ways per round and median.
The tokens of the three ways are compared.
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
from workers.engine.llama_blocks import use_llama_blocks
from workers.engine.model import LoadedModel, load_model
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

#: The ways a pass can run: transformers' forward; the direct pass calling the decoder's blocks as
#: modules; the direct pass with the blocks as tensor operations (the engine's default).
WAYS = ("forward", "modules", "tensors")


def _batch(lm: LoadedModel, way: str) -> RunningBatch:
    batch = RunningBatch(lm)
    batch._direct = way != "forward"
    use_llama_blocks(lm.model, way == "tensors")
    return batch


def run(lm: LoadedModel, rows: int, tokens: int, way: str) -> tuple[float, list[tuple]]:
    """Milliseconds per decode step of one batch of `rows` rows, and their tokens."""
    sampling = SamplingParams(0.0, 1.0, tokens, ignore_eos=True)
    requests = [GenerationRequest(p, RowPolicy(), sampling) for p in prompts(rows)]
    batch = _batch(lm, way)
    batch.admit([Joining(i, r, lm.encode(r.prompt)) for i, r in enumerate(requests)])
    results: dict[int, tuple] = {}
    steps, began = 0, time.perf_counter()
    while len(batch):
        for event in batch.step():
            if event.result is not None:
                results[event.key] = event.result.token_ids
        steps += 1
    return (time.perf_counter() - began) / steps * 1e3, [results[k] for k in sorted(results)]


def admissions(lm: LoadedModel, rows: int, join: int, way: str) -> float:
    """Milliseconds per admission of `join` rows into a batch filling up to `rows` rows."""
    sampling = SamplingParams(0.0, 1.0, 1_000, ignore_eos=True)  # no row leaves meanwhile
    requests = [GenerationRequest(p, RowPolicy(), sampling) for p in prompts(rows)]
    joining = [Joining(i, r, lm.encode(r.prompt)) for i, r in enumerate(requests)]
    batch = _batch(lm, way)
    groups = [joining[i : i + join] for i in range(0, rows, join)]
    began = time.perf_counter()
    for group in groups:
        batch.admit(group)
    return (time.perf_counter() - began) / len(groups) * 1e3


def _ratios(rounds: list[dict[str, float]], what: str, a: str, b: str) -> dict[str, object]:
    values = [r[f"{what}_{a}_ms"] / r[f"{what}_{b}_ms"] for r in rounds]
    return {
        "per_round": [round(x, 3) for x in values],
        "median": round(statistics.median(values), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "var/models/tiny")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--join", type=int, default=3, help="rows per admission")
    args = parser.parse_args()
    lm = load_model(args.model, dtype="float32")
    for way in WAYS:
        run(lm, 4, 4, way)  # warm-up
    rounds = []
    for _ in range(args.rounds):
        found: dict[str, float] = {}
        tokens = {}
        for way in WAYS:
            found[f"step_{way}_ms"], tokens[way] = run(lm, args.rows, args.tokens, way)
        if not tokens["forward"] == tokens["modules"] == tokens["tensors"]:
            raise SystemExit("the direct passes made other tokens than the forward")
        for way in WAYS:
            found[f"admit_{way}_ms"] = admissions(lm, args.rows, args.join, way)
        rounds.append({k: round(v, 3) for k, v in found.items()})
        print(
            "step: "
            + ", ".join(f"{w} {found[f'step_{w}_ms']:.3f}" for w in WAYS)
            + f" ms; admission of {args.join}: "
            + ", ".join(f"{w} {found[f'admit_{w}_ms']:.3f}" for w in WAYS)
            + " ms",
            flush=True,
        )
    out: dict[str, object] = {
        "model": args.model.name,
        "rows": args.rows,
        "tokens": args.tokens,
        "join": args.join,
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
    }
    for what in ("step", "admit"):
        for a, b in (("modules", "forward"), ("tensors", "modules"), ("tensors", "forward")):
            ratio = _ratios(rounds, what, a, b)
            out[f"{what}_{a}_over_{b}"] = ratio
            print(f"{what}: {a} / {b} median {ratio['median']} ({ratio['per_round']})")
    save_results(f"decode-step-{args.model.name}.json", out)


if __name__ == "__main__":
    main()
