"""What a model's decision suffix costs the engine: the same requests with and without it.

    .venv/bin/python -m bench.decision_suffix --model var/models/demo

The model is loaded once; the second engine serves it with the manifest's suffix removed (its
first step then reads the prompt's end: other decisions, same answers after `[respond]`). A model
with a query adapter (`workers/engine/query_adapter.py`) is also served with its suffix and
without the adapter (loaded again without it: other decisions, plain linear layers). They run
alternately, `--repeats` times each, on the same greedy requests; the ratios of the medians are
printed and saved to bench/results/decision-suffix-<model>.json. Never a timed test.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from bench.saving import save_results
from core.categories import CATEGORIES
from core.settings import PROJECT_ROOT
from workers.engine.batch import Engine
from workers.engine.model import load_model
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams
from workers.training.probe import PROBE


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "var/models/demo")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lm = load_model(args.model, dtype="float32")
    if not lm.manifest.decision_ids:
        raise SystemExit(f"{args.model}: the manifest has no decision suffix")
    plain = dataclasses.replace(
        lm, manifest=dataclasses.replace(lm.manifest, decision_tokens=(), decision_ids=())
    )
    rule = RowPolicy("bias", (0.0,) * len(CATEGORIES))
    budget = SamplingParams(temperature=0.0, max_new_tokens=args.max_tokens)
    requests = [GenerationRequest(p.text, rule, budget) for p in PROBE[: args.requests]]
    engines = {"suffix": Engine(lm), "no_suffix": Engine(plain)}
    if lm.query_adapter is not None:
        bare = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        engines["no_adapter"] = Engine(dataclasses.replace(lm, model=bare, query_adapter=None))
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    tokens: dict[str, int] = {}
    for engine in engines.values():
        engine.generate(requests[:8])  # warm-up
    for _ in range(args.repeats):
        for name, engine in engines.items():
            began = time.perf_counter()
            results, _ = engine.generate(requests)
            seconds[name].append(time.perf_counter() - began)
            tokens[name] = sum(r.completion_tokens for r in results)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    out = {
        "model": args.model.name,
        "requests": len(requests),
        "seconds": seconds,
        "completion_tokens": tokens,
        "ratio_suffix_to_none": medians["suffix"] / medians["no_suffix"],
        "per_token_ratio": (medians["suffix"] / tokens["suffix"])
        / (medians["no_suffix"] / tokens["no_suffix"]),
        **(
            {
                "ratio_adapter_to_none": medians["suffix"] / medians["no_adapter"],
                "adapter_per_token_ratio": (medians["suffix"] / tokens["suffix"])
                / (medians["no_adapter"] / tokens["no_adapter"]),
            }
            if "no_adapter" in medians
            else {}
        ),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_results(f"decision-suffix-{args.model.name}.json", out)
    print(
        f"{args.model.name}: {len(requests)} requests, with the suffix {medians['suffix']:.2f} s, "
        f"without {medians['no_suffix']:.2f} s (ratio {out['ratio_suffix_to_none']:.3f}; per "
        f"completion token {out['per_token_ratio']:.3f}: the decisions, so the answer lengths, "
        "differ)"
    )
    if "no_adapter" in medians:
        print(
            f"without the query adapter {medians['no_adapter']:.2f} s (ratio "
            f"{out['ratio_adapter_to_none']:.3f}; per completion token "
            f"{out['adapter_per_token_ratio']:.3f})"
        )


if __name__ == "__main__":
    main()
