"""Calibration re-solve benchmark: new targets from stored summaries alone, no model.

    .venv/bin/python -m bench.calibration_solve                 # 1,000,000 prompts x 5 categories
    .venv/bin/python -m bench.calibration_solve --prompts 100000 --repeats 3

Summaries are synthetic but shaped like a refusal-token model's: each prompt belongs to one of
the five categories or to ordinary requests, and its own category's refusal logit stands out.
Every method re-solves the same five traffic targets, then five labelled ones; each time is the
best of `--repeats` runs. Also reported: passes, convergence, the worst miss on the set, and the
control error on an equally large held-out draw. Saved to bench/results/calibration-solve.json.
Never a timed test.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import numpy as np

from bench.saving import save_results
from core.calibration import Solution, control_error, solve
from core.categories import CATEGORIES, CLASSES
from core.summary import Summaries

C = len(CATEGORIES)
#: Shares of traffic: 8% per category, 60% ordinary requests.
CLASS_SHARES = np.array([0.08] * C + [0.6])
TRAFFIC_TARGETS = {
    "incomplete": 0.05,
    "unsupported": 0.06,
    "indeterminate": 0.04,
    "humanizing": 0.03,
    "safety": 0.09,
}
LABELLED_TARGETS = {c: 0.8 for c in CATEGORIES} | {"safety": 0.95}


def synthetic(n: int, seed: int) -> tuple[Summaries, np.ndarray]:
    """n summaries and their true classes (index into `CLASSES`), 30% sampled at T = 0.7."""
    rng = np.random.default_rng(seed)
    true = rng.choice(C + 1, size=n, p=CLASS_SHARES)
    s = rng.normal(-5.0, 2.0, (n, C))  # (N, C)
    own = true < C
    s[own, true[own]] += rng.normal(8.0, 2.5, int(own.sum()))
    m = rng.normal(4.0, 1.5, n)
    l1 = m + np.log1p(np.exp(rng.normal(0.5, 1.0, n)))
    temperature = np.where(rng.random(n) < 0.3, 0.7, 1.0)
    lt = m / temperature + (l1 - m)
    return Summaries(s=s, m=m, l1=l1, lt=lt, temperature=temperature), true


def timed(repeats: int, fn: Any) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def describe(sol: Solution, seconds: float, held: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 3),
        "rounds": sol.rounds,
        "converged": sol.converged,
        "all_feasible": all(r.feasible for r in sol.categories.values()),
        "max_miss_on_set": max(abs(r.rate - r.target) for r in sol.categories.values()),
        "max_control_error_held_out": max(e["error"] for e in held.values()),
        "values": sol.to_json()["values"],
    }


def run(n: int, repeats: int, methods: list[str]) -> dict[str, Any]:
    summ, true = synthetic(n, 1)
    holdout, held_true = synthetic(n, 2)
    labels = [CLASSES[t] for t in true]
    held_labels = [CLASSES[t] for t in held_true]
    out: dict[str, Any] = {"prompts": n, "categories": C, "repeats": repeats}
    for method in methods:
        for kind, targets in (("traffic", TRAFFIC_TARGETS), ("labelled", LABELLED_TARGETS)):
            lab = labels if kind == "labelled" else None
            seconds, sol = timed(
                repeats,
                lambda t=targets, k=kind, m=method, lab=lab: solve(
                    summ, t, method=m, target_kind=k, labels=lab
                ),
            )
            held = control_error(sol, holdout, labels=held_labels if kind == "labelled" else None)
            out[f"{method}/{kind}"] = row = describe(sol, seconds, held)
            print(
                f"{n:>9} {method:>13} {kind:>9} {row['seconds']:>8.2f} s  rounds {row['rounds']:>2}"
                f"  converged {row['converged']!s:>5}  miss {row['max_miss_on_set']:.1e}"
                f"  held-out error {row['max_control_error_held_out']:.4f}",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, action="append", help="repeatable")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", default="threshold,greedy_bias,sampled_bias")
    args = parser.parse_args()
    sizes = args.prompts or [1_000_000]
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "runs": [run(n, args.repeats, args.methods.split(",")) for n in sizes],
    }
    save_results("calibration-solve.json", result)


if __name__ == "__main__":
    main()
