"""Early exit: decode steps a policy's refusal messages save, on a mix with 30% refusals.

    .venv/bin/python -m bench.early_exit [--model DIR] [--requests 100] [--max-tokens 64]

The same requests run twice on the engine in-process (`RunningBatch`, batches of 32): 30% of
them carry a policy that refuses as `safety`, the rest one that always answers. The first run
lets the model write its own refusals; in the second the refusing policy gives a
`refusal_message`, so those rows leave the batch after their control token. Reports the
row-decode steps (tokens after the first), batch decode steps and wall time of each run and the
share saved. Saves bench/results/early-exit-<model>.json.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from bench.engine import prompts
from bench.saving import save_results
from core.categories import CATEGORIES
from core.settings import PROJECT_ROOT
from workers.engine.continuous import Joining, RunningBatch
from workers.engine.model import LoadedModel, load_model
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

SAFETY = CATEGORIES.index("safety")
MESSAGE = "I can't help with that."


def mix(n: int, max_tokens: int, *, with_message: bool) -> list[GenerationRequest]:
    """`n` greedy requests; every third-ish (30%) refuses as safety, the rest answer."""
    answer = RowPolicy("bias", (-math.inf,) * len(CATEGORIES))
    messages = tuple(
        MESSAGE if with_message and c == SAFETY else None for c in range(len(CATEGORIES))
    )
    bias = tuple(1e4 if c == SAFETY else -math.inf for c in range(len(CATEGORIES)))
    refuse = RowPolicy("bias", bias, refusal_messages=messages)
    sampling = SamplingParams(max_new_tokens=max_tokens)
    return [
        GenerationRequest(text, refuse if (i * 3) % 10 < 3 else answer, sampling)
        for i, text in enumerate(prompts(n))
    ]


def run(lm: LoadedModel, reqs: list[GenerationRequest], batch: int = 32) -> dict[str, float]:
    rows = steps = refused = 0
    tokens = 0
    started = time.perf_counter()
    for start in range(0, len(reqs), batch):
        running = RunningBatch(lm)
        chunk = reqs[start : start + batch]
        events = running.admit([Joining(i, r, lm.encode(r.prompt)) for i, r in enumerate(chunk)])
        while events:
            for e in events:
                if e.result is not None:
                    tokens += e.result.completion_tokens
                    refused += e.result.refused
            events = running.step()
        rows += len(chunk)
        steps += running.counters.decode_steps
    return {
        "rows": rows,
        "refused": refused,
        "row_decode_steps": tokens - rows,
        "batch_decode_steps": steps,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "var/models/tiny")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    lm = load_model(args.model, dtype="float32")
    run(lm, mix(8, 4, with_message=False))  # warm-up
    own = run(lm, mix(args.requests, args.max_tokens, with_message=False))
    early = run(lm, mix(args.requests, args.max_tokens, with_message=True))
    out = {
        "model": args.model.name,
        "refusal_share": own["refused"] / own["rows"],
        "model_writes_refusals": own,
        "policy_refusal_messages": early,
        "row_decode_steps_saved": 1 - early["row_decode_steps"] / own["row_decode_steps"],
        "batch_decode_steps_saved": 1 - early["batch_decode_steps"] / own["batch_decode_steps"],
        "wall_time_saved": 1 - early["seconds"] / own["seconds"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_results(f"early-exit-{args.model.name}.json", out)
    print(
        f"{args.model.name}: {out['refusal_share']:.0%} refused; refusal messages save "
        f"{out['row_decode_steps_saved']:.1%} of row-decode steps "
        f"({own['row_decode_steps']} -> {early['row_decode_steps']}), "
        f"{out['batch_decode_steps_saved']:.1%} of batch steps, "
        f"{out['wall_time_saved']:.1%} of wall time"
    )


if __name__ == "__main__":
    main()
