"""Auto-tuning (DESIGN 4.4): one guarded step of a category's threshold toward its target rate.

The periodic task reads a category's recent histogram of p_c (log-odds bins, core/histogram.py)
and its observed requests and refusals, calls `propose_threshold`, and writes a new policy
version only when the decision says `changed`. Pure: no I/O, no clock.

The tuner trusts evidence, not steps: it holds while the target lies inside the 95% Wilson
interval of the observed rate (the difference is noise) and while it lies inside the 99.9% one
(weak evidence: a tuner testing every round would otherwise act on the one round in twenty
whose noise crosses the 95% line, then on the next, and wander), and with strong evidence goes
straight to the threshold the window's histogram says would have met the target, a quantile
solved as calibration solves it. The histogram may pool every version's traffic of the window
(p_c is the model's score, whatever the rules) while it agrees with the active version's
evidence. Only the size of that move in refusal rate is bounded (`max_rate_step`),
never the move in threshold, which says nothing about how much traffic changes side: near a
dense part of the score distribution 0.01 of threshold can move the rate by 20 points, in a
sparse part 0.3 can move it by none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.histogram import BIN_WIDTH, HISTOGRAM_BINS, bin_edges, logodds
from core.intervals import Z_95, Z_999, wilson_interval


@dataclass(frozen=True)
class TuneGuards:
    """What keeps the tuner calm: enough samples, evidence, a dead band and a bounded move.

    No change is made with fewer than `min_samples` observed requests or counted scores, while
    the target lies in the observed rate's Wilson interval at `z` (95%: noise) or at `strong_z`
    (99.9%: weak evidence), or while |observed rate - target| <= hysteresis. A move changes the
    refusal rate the histogram predicts by at most `max_rate_step`.
    """

    min_samples: int = 200
    max_rate_step: float = 0.25
    hysteresis: float = 0.02
    z: float = Z_95
    strong_z: float = Z_999


@dataclass(frozen=True)
class TuneDecision:
    """The outcome of one tuning round for one category, with the reason (for the audit log)."""

    category: str
    old_threshold: float
    new_threshold: float
    observed_rate: float | None
    target: float
    samples: int
    changed: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def threshold_for_rate(histogram: Sequence[int], target: float) -> float:
    """The threshold tau with a share `target` of the counted p_c at or above it.

    The (1 - target) quantile of the histogram, interpolated linearly in log-odds within its bin
    (the outermost bins, which also hold everything beyond +-16, are treated like the others),
    so the result lies in [sigmoid(-16), sigmoid(16)]. target 0 gives the top of the highest
    non-empty bin, 1 the bottom of the lowest.
    """
    counts = _counts(histogram)
    total = counts.sum()
    if total <= 0:
        raise ValueError("the histogram is empty")
    above = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # (B+1,) mass in bins >= j
    want = target * total
    if want <= 0.0:
        x = bin_edges()[np.flatnonzero(counts)[-1] + 1]
    else:
        j = int(np.flatnonzero(above >= want)[-1])  # above[j] >= want > above[j + 1]
        x = bin_edges()[j + 1] - (want - above[j + 1]) / counts[j] * BIN_WIDTH
    return float(1.0 / (1.0 + np.exp(-x)))


def rate_at_threshold(histogram: Sequence[int], threshold: float) -> float:
    """The share of the counted p_c at or above `threshold`, the inverse of `threshold_for_rate`
    (linear in log-odds within a bin)."""
    counts = _counts(histogram)
    total = counts.sum()
    if total <= 0:
        raise ValueError("the histogram is empty")
    x = float(logodds(np.array([threshold]))[0])
    edges = bin_edges()
    j = int(np.clip(np.searchsorted(edges, x, side="right") - 1, 0, HISTOGRAM_BINS - 1))
    inside = float(np.clip((edges[j + 1] - x) / BIN_WIDTH, 0.0, 1.0))
    above = counts[j + 1 :].sum() + inside * counts[j]
    return float(above / total)


def _counts(histogram: Sequence[int]) -> np.ndarray:
    counts = np.asarray(histogram, dtype=np.float64)
    if counts.shape != (HISTOGRAM_BINS,) or (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError(f"histogram must be {HISTOGRAM_BINS} non-negative counts")
    return counts


def propose_threshold(
    histogram: Sequence[int],
    *,
    current: float,
    target: float,
    requests: int,
    refusals: int,
    guards: TuneGuards,
    min_threshold: float = 0.0,
    max_threshold: float = 1.0,
    category: str = "",
    pooled: Sequence[int] | None = None,
) -> TuneDecision:
    """Move `current` to the threshold that would have met `target`, when the evidence says so.

    `histogram` counts the scores the observed requests had; `pooled`, when given, counts more
    of the same traffic (every version's, in the window) and is solved on instead, as long as
    the rate it predicts at `current` lies in the observed rate's 99.9% interval (otherwise the
    traffic drifted since part of it was counted).

    Holds when the histogram counts or the requests are fewer than `min_samples`, when the
    target lies in the observed rate's Wilson interval at `z` or `strong_z` (or within
    `hysteresis` of it), or
    when the histogram's threshold lies on the wrong side of `current` (other categories win
    prompts the histogram counts, so it cannot say how far to go the other way). Otherwise it
    goes to the histogram's threshold for the target, or, when that would change the predicted
    rate by more than `max_rate_step`, to the threshold whose predicted rate is that far; the
    result never leaves [min_threshold, max_threshold].
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target must be in [0, 1], got {target}")
    if not 0.0 <= min_threshold <= max_threshold <= 1.0:
        raise ValueError("need 0 <= min_threshold <= max_threshold <= 1")
    samples = int(_counts(histogram).sum())
    observed = refusals / requests if requests > 0 else None

    def decide(new: float, reason: str) -> TuneDecision:
        return TuneDecision(
            category, current, new, observed, target, samples, new != current, reason
        )

    if samples < guards.min_samples:
        return decide(current, f"{samples} samples, fewer than {guards.min_samples}")
    if observed is None:
        return decide(current, "no requests observed")
    if requests < guards.min_samples:
        return decide(current, f"{requests} requests, fewer than {guards.min_samples}")
    interval = wilson_interval(refusals, requests, z=guards.z)
    assert interval is not None  # requests > 0
    if target in interval:
        return decide(
            current,
            f"target {target} is inside the observed rate's 95% interval "
            f"[{interval.low:.4f}, {interval.high:.4f}]: no evidence to move",
        )
    error = observed - target
    if abs(error) <= guards.hysteresis:
        return decide(
            current, f"observed {observed:.4f} is within {guards.hysteresis} of target {target}"
        )
    strong = wilson_interval(refusals, requests, z=guards.strong_z)
    assert strong is not None
    if target in strong:
        return decide(
            current,
            f"target {target} is outside the observed rate's 95% interval "
            f"[{interval.low:.4f}, {interval.high:.4f}] but inside its 99.9% one "
            f"[{strong.low:.4f}, {strong.high:.4f}]: weak evidence, wait for more",
        )
    if pooled is not None and rate_at_threshold(pooled, current) in strong:
        histogram = pooled
    ideal = threshold_for_rate(histogram, target)
    if (ideal - current) * error <= 0.0:
        return decide(
            current,
            f"observed {observed:.4f} vs target {target}, but the histogram's threshold "
            f"{ideal:.4f} does not lie in the direction that corrects it",
        )
    notes = [
        f"observed {observed:.4f} [{interval.low:.4f}, {interval.high:.4f}] vs target {target}: "
        f"the window's threshold is {ideal:.4f}"
    ]
    predicted = rate_at_threshold(histogram, current)
    goal = float(
        np.clip(target, predicted - guards.max_rate_step, predicted + guards.max_rate_step)
    )
    new = ideal
    if goal != target:
        # Between current and ideal: the rate is monotone in the threshold.
        new = threshold_for_rate(histogram, goal)
        lo, hi = sorted((current, ideal))
        new = float(np.clip(new, lo, hi))
        notes.append(f"rate step limited to {guards.max_rate_step} (to {goal:.4f})")
    held = float(np.clip(new, min_threshold, max_threshold))
    if held != new:
        notes.append(f"held within [{min_threshold}, {max_threshold}]")
    return decide(held, "; ".join(notes))
