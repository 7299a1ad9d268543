"""The Wilson interval: known values, its edges, and its coverage."""

from __future__ import annotations

import numpy as np
import pytest

from core.intervals import wilson_interval


def test_known_values() -> None:
    # 30 of 100: Wilson 95% is [0.21895, 0.39585] (statsmodels proportion_confint, "wilson").
    interval = wilson_interval(30, 100)
    assert interval is not None
    assert (interval.low, interval.high) == pytest.approx((0.21895, 0.39585), abs=1e-5)
    assert 0.3 in interval and 0.4 not in interval


def test_edges_stay_inside_zero_and_one() -> None:
    none = wilson_interval(0, 20)
    every = wilson_interval(20, 20)
    assert none is not None and every is not None
    assert none.low == 0.0 and 0.1 < none.high < 0.2
    assert every.high == 1.0 and 0.8 < every.low < 0.9
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    for rate, n in ((0.02, 150), (0.3, 150), (0.5, 40)):
        draws = rng.binomial(n, rate, 4000)
        covered = [rate in interval for k in draws if (interval := wilson_interval(k, n))]
        assert 0.92 <= np.mean(covered) <= 0.99, (rate, n, np.mean(covered))
