"""Uncertainty of an observed rate: the Wilson score interval.

A refusal rate measured on n requests is a binomial proportion; the Wilson interval stays inside
[0, 1] and keeps close to its nominal coverage for small n and rates near 0 or 1, where the
normal approximation (rate +- z * standard error) does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The standard normal quantiles of two-sided 95% and 99.9% intervals.
Z_95 = 1.959963984540054
Z_999 = 3.2905267314919255


@dataclass(frozen=True)
class Interval:
    """A closed interval [low, high] of rates."""

    low: float
    high: float

    def __contains__(self, rate: float) -> bool:
        return self.low <= rate <= self.high


def wilson_interval(successes: float, trials: float, *, z: float = Z_95) -> Interval | None:
    """The Wilson score interval of `successes` out of `trials` (None when there are none).

    `successes` may be fractional (an expected count, e.g. of sampled decisions).
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return None
    rate = successes / trials
    z2 = z * z
    centre = (rate + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(rate * (1 - rate) / trials + z2 / (4 * trials**2))
    # Exactly 0 or 1 observed: the bound on that side is the observation itself.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(low, high)


def proportions_differ(
    successes_a: float, trials_a: float, successes_b: float, trials_b: float, *, z: float
) -> bool:
    """Whether two observed rates differ beyond `z` standard errors of their difference (the
    pooled two-proportion test); False when either has no trials."""
    if trials_a <= 0 or trials_b <= 0:
        return False
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    difference = abs(successes_a / trials_a - successes_b / trials_b)
    return difference > z * spread if spread > 0 else difference > 0
