"""Auto-tuning (DESIGN 4.4): one guarded step of a category's threshold toward its target rate.

The periodic task reads a category's recent histogram of p_c (log-odds bins, core/histogram.py)
and its observed requests and refusals, calls `propose_threshold`, and writes a new policy
version only when the decision says `changed`. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.histogram import BIN_WIDTH, HISTOGRAM_BINS, bin_edges


@dataclass(frozen=True)
class TuneGuards:
    """What keeps the tuner calm: enough samples, small steps, and a dead band around the target.

    max_step bounds the change of the threshold per round (in probability); no change is made
    while |observed rate - target| <= hysteresis.
    """

    min_samples: int = 200
    max_step: float = 0.05
    hysteresis: float = 0.02


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
) -> TuneDecision:
    """Move `current` toward the threshold that would have met `target`, within the guards.

    Skips when the histogram counts fewer than `min_samples`, when no request was observed, when
    the observed rate refusals/requests is within `hysteresis` of the target, or when the
    histogram's threshold lies on the wrong side of `current` (other categories win prompts the
    histogram counts, so it cannot say how far to go the other way). Otherwise the step is at
    most `max_step`, and the result never leaves [min_threshold, max_threshold].
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
    error = observed - target
    if abs(error) <= guards.hysteresis:
        return decide(
            current, f"observed {observed:.4f} is within {guards.hysteresis} of target {target}"
        )
    ideal = threshold_for_rate(histogram, target)
    if (ideal - current) * error <= 0.0:
        return decide(
            current,
            f"observed {observed:.4f} vs target {target}, but the histogram's threshold "
            f"{ideal:.4f} does not lie in the direction that corrects it",
        )
    step = float(np.clip(ideal - current, -guards.max_step, guards.max_step))
    new = float(np.clip(current + step, min_threshold, max_threshold))
    notes = [f"observed {observed:.4f} vs target {target}: toward {ideal:.4f}"]
    if abs(ideal - current) > guards.max_step:
        notes.append(f"step limited to {guards.max_step}")
    if new != current + step:
        notes.append(f"held within [{min_threshold}, {max_threshold}]")
    return decide(new, "; ".join(notes))
