"""Auto-tuning (DESIGN 4.4): one guarded move of a category's threshold toward its target rate.

Every served request keeps its first-token summary, so the rate any rules would have had on a
window of traffic is recomputed exactly (`core.replay`), whatever version served each request.
The tuner therefore judges the *active* rules on the whole window, not on the requests the active
version served: after a move it does not wait for the new version's traffic, and the window's
every request counts as evidence. Pure: no I/O, no clock.

Each round, per auto-tuned category, it replays the active rules over the window and compares
the replayed rate with the target through its Wilson interval. It holds while the target lies
inside the 95% interval (the difference is noise) or the 99.9% one (weak evidence: a tuner
testing every round at 95% would act on the one round in twenty whose noise crosses the line,
then on the next, and wander). With strong evidence it goes straight to the threshold that gives
the target on the window (a quantile over the requests the category can win, as calibration
solves it), with the move bounded in refusal rate (`max_rate_step`), never in threshold: near a
dense part of the scores 0.01 of threshold moves 20 points of traffic, in a sparse part 0.3 none.
A gap wider than the bound is closed in the fewest equal moves (30 points with a 25-point bound:
two of 15), so the last move never leaves a few-point remainder in the weak-evidence band, where
the tuner would wait, sometimes for many rounds, before taking it.

A long window buys precision but remembers old traffic. The caller reads it in `WINDOW_PARTS`
equal slices of time; where the rows after a slice boundary are refused at a rate that differs
from the rows before it beyond `drift_z` standard errors (5: the test runs every round at every
boundary, and a laxer one raised false alarms in long simulated runs), the traffic drifted, and the tuner judges and
solves on the rows after the latest such boundary alone (when they are `min_samples` at least).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.calibration import solve
from core.categories import category_index
from core.decision import threshold_decision
from core.intervals import Z_95, Z_999, proportions_differ, wilson_interval
from core.policy import PolicyRules, threshold_vector
from core.summary import Summaries

#: A window is read in this many equal slices of time: their boundaries are checked for drift.
WINDOW_PARTS = 4


@dataclass(frozen=True)
class TuneGuards:
    """What keeps the tuner calm: enough samples, evidence, a dead band and a bounded move.

    No change is made with fewer than `min_samples` requests in the window, while the target
    lies in the replayed rate's Wilson interval at `z` (95%: noise) or at `strong_z` (99.9%: weak
    evidence), or while |replayed rate - target| <= hysteresis. A move changes the rate on the
    window by at most `max_rate_step` (to the nearest request); a wider gap is closed in the
    fewest equal moves. The rows after a slice boundary
    count alone when their rate differs from the rows before it beyond `drift_z` standard errors.
    """

    min_samples: int = 200
    max_rate_step: float = 0.25
    hysteresis: float = 0.02
    z: float = Z_95
    strong_z: float = Z_999
    #: About one false alarm in 3.5 million tests: the tuner tests every boundary every round.
    drift_z: float = 5.0


@dataclass(frozen=True)
class TuneDecision:
    """The outcome of one tuning round for one category, with the reason (for the audit log).

    `replayed_rate` is the active rules' rate on the requests judged (the whole window, or its
    part after a drift), `samples` how many they are."""

    category: str
    old_threshold: float
    new_threshold: float
    replayed_rate: float | None
    target: float
    samples: int
    changed: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def replayed_refused(window: Summaries, rules: PolicyRules, category: str) -> np.ndarray:
    """(N,) bool: which of the window's requests threshold-mode `rules` refuse with `category`."""
    refused: np.ndarray = threshold_decision(window, threshold_vector(rules)) == category_index(
        category
    )
    return refused


def replayed_refusals(window: Summaries, rules: PolicyRules, category: str) -> int:
    """How many of the window's requests threshold-mode `rules` refuse with `category`."""
    return int(replayed_refused(window, rules, category).sum())


def propose_threshold(
    window: Summaries,
    *,
    rules: PolicyRules,
    category: str,
    guards: TuneGuards,
    parts: Sequence[int] = (),
) -> TuneDecision:
    """Move `category`'s threshold in threshold-mode `rules` toward its `target_rate`, judged
    and solved on `window` (the policy's recent traffic), when the evidence says so; the result
    never leaves the rule's [min_threshold, max_threshold].

    `parts`, when given, are the row counts of the window's consecutive slices of time, oldest
    first (the rows of `window` in that order, within a slice in any order).
    """
    if rules.mode != "threshold":
        raise ValueError("the tuner moves thresholds: the rules must be in threshold mode")
    rule = rules.rule(category)
    if rule.target_rate is None:
        raise ValueError(f"{category} has no target rate")
    current, target = rule.threshold, rule.target_rate
    notes: list[str] = []

    def decide(new: float, rate: float | None, *reasons: str) -> TuneDecision:
        why = "; ".join([*notes, *reasons])
        return TuneDecision(category, current, new, rate, target, n, new != current, why)

    n = len(window)
    if n < guards.min_samples:
        return decide(current, None, f"{n} requests in the window, fewer than {guards.min_samples}")
    refused = replayed_refused(window, rules, category)
    if start := _after_drift(refused, parts, guards, notes):
        window, refused, n = window.take(np.arange(start, n)), refused[start:], n - start
    refusals = int(refused.sum())
    rate = refusals / n
    interval = wilson_interval(refusals, n, z=guards.z)
    strong = wilson_interval(refusals, n, z=guards.strong_z)
    assert interval is not None and strong is not None  # n > 0
    replayed = f"replayed {rate:.4f} [{interval.low:.4f}, {interval.high:.4f}] on {n} requests"
    if target in interval:
        return decide(current, rate, f"target {target} is inside the {replayed}: noise, hold")
    if abs(rate - target) <= guards.hysteresis:
        return decide(current, rate, f"{replayed} is within {guards.hysteresis} of {target}")
    if target in strong:
        return decide(
            current,
            rate,
            f"target {target} is outside the {replayed} but inside its 99.9% interval "
            f"[{strong.low:.4f}, {strong.high:.4f}]: weak evidence, wait for more",
        )
    # A gap wider than the step is closed in equal moves, never one full step and a remainder:
    # a remainder of a few points would sit in the weak-evidence band and stall the tuner there.
    moves = max(1, math.ceil(abs(target - rate) / guards.max_rate_step - 1e-9))
    goal = rate + (target - rate) / moves
    c = category_index(category)
    solved = float(
        solve(window, {category: goal}, method="threshold", initial=threshold_vector(rules)).values[
            c
        ]
    )
    if (solved - current) * (rate - target) <= 0:  # ties: no threshold on the right side helps
        return decide(current, rate, f"{replayed}: no threshold moves it toward {target}")
    new = float(np.clip(solved, rule.min_threshold, rule.max_threshold))
    reasons = [f"{replayed} vs target {target}: threshold {solved:.4f} gives {goal:.4f}"]
    if moves > 1:
        reasons.append(f"rate step limited to {guards.max_rate_step}: {moves} equal moves")
    if new != solved:
        reasons.append(f"held within [{rule.min_threshold}, {rule.max_threshold}]")
    return decide(new, rate, *reasons)


def _after_drift(
    refused: np.ndarray, parts: Sequence[int], guards: TuneGuards, notes: list[str]
) -> int:
    """The first row after the latest slice boundary where the rate changed (with a note why),
    or 0: the rows after a boundary differ from those before it beyond `drift_z` and are
    `min_samples` at least."""
    if parts and sum(parts) != len(refused):
        raise ValueError(f"parts count {sum(parts)} rows, the window holds {len(refused)}")
    n = len(refused)
    for boundary in np.cumsum(parts)[-2::-1]:  # every boundary inside the window, newest first
        before, after = int(refused[:boundary].sum()), int(refused[boundary:].sum())
        newer = n - int(boundary)
        if newer < guards.min_samples or not 0 < boundary < n:
            continue
        if proportions_differ(before, int(boundary), after, newer, z=guards.drift_z):
            notes.append(
                f"traffic drifted: the newest {newer} requests are refused at "
                f"{after / newer:.4f}, the {boundary} before them at {before / boundary:.4f}; "
                "judged on the newest alone"
            )
            return int(boundary)
    return 0
