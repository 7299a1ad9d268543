"""Auto-tuner rounds to target on recorded real-prompt scores, by window length.

    .venv/bin/python -m bench.autotune_rounds                     # 13 starts x 100 seeds
    .venv/bin/python -m bench.autotune_rounds --seeds 20 --windows 60 300

The issue's setting (`tests/core/autotune_traffic.py`): one policy with only `safety` on,
threshold mode, 30% target, a round every 15 s, 150 requests at least, Poisson traffic at 4
requests/s drawn from the tiny model's first-token summaries of 366 real-ish prompts, 20 minutes
per run, traffic already flowing for one window when the first round runs ("warm"; cold runs,
where traffic starts with the tuner, are measured too). "Within 5 points"
is the expected refusal rate of the threshold in force on the traffic distribution (the
recorded set), not a window's observed rate. Reported per window length: rounds until the run
is within 5 points for good (max, median, share within 3 rounds, runs that never settle) and
the direction reversals of the threshold after that. Saved to bench/results/autotune-rounds.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from typing import Any

import numpy as np

from core.settings import PROJECT_ROOT
from tests.core.autotune_traffic import Setting, expected_rate, safety_only, simulate

RESULTS = PROJECT_ROOT / "bench" / "results"
STARTS = [0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.999, 1.0]
TOLERANCE = 0.05


def measure(window_seconds: float, seeds: int, *, warm: bool) -> dict[str, Any]:
    setting = replace(Setting(), window_seconds=window_seconds, warm=warm)
    rounds: list[int] = []
    reversals: list[int] = []
    never = 0
    for start in STARTS:
        for seed in range(seeds):
            run = simulate(start, seed, setting)
            settled = run.rounds_to_within(setting.target, TOLERANCE)
            if settled is None:
                never += 1
                continue
            rounds.append(settled)
            reversals.append(run.reversals_from(settled))
    got = np.array(rounds)
    turns = np.array(reversals)
    total = len(STARTS) * seeds
    return {
        "window_seconds": window_seconds,
        "warm": warm,
        "requests_per_window": setting.requests_per_second * window_seconds,
        "runs": total,
        "never_within": never,
        "within_by_round_3": int((got <= 3).sum()),
        "rounds_to_within_max": int(got.max()) if len(got) else None,
        "rounds_to_within_median": float(np.median(got)) if len(got) else None,
        "rounds_to_within_counts": {str(k): int((got == k).sum()) for k in np.unique(got)},
        "reversals_after_counts": {str(k): int((turns == k).sum()) for k in np.unique(turns)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--windows", type=float, nargs="+", default=[60, 120, 180, 240, 300])
    parser.add_argument("--cold-windows", type=float, nargs="*", default=[60, 300])
    args = parser.parse_args()
    began = time.perf_counter()
    windows = []
    for window, warm in [(w, True) for w in args.windows] + [(w, False) for w in args.cold_windows]:
        row = measure(window, args.seeds, warm=warm)
        print(json.dumps(row))
        windows.append(row)
    document = {
        "setting": {
            "target": Setting().target,
            "round_seconds": Setting().round_seconds,
            "requests_per_second": Setting().requests_per_second,
            "min_samples": Setting().guards.min_samples,
            "rounds_per_run": Setting().rounds,
            "tolerance": TOLERANCE,
            "starts": {str(t): round(expected_rate(safety_only(t, 0.3)), 4) for t in STARTS},
            "seeds": args.seeds,
        },
        "windows": windows,
        "seconds": round(time.perf_counter() - began, 1),
        "machine": platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "autotune-rounds.json").write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
