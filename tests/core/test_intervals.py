"""The Wilson interval: known values, its edges, and its coverage."""

from __future__ import annotations

import numpy as np
import pytest

from core.intervals import Z_95, proportions_differ, wilson_interval


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


def test_two_rates_differ_only_beyond_z_standard_errors_of_their_difference() -> None:
    # 30/100 vs 45/100: pooled 0.375, standard error 0.0685, difference 0.15 = 2.19 errors.
    assert proportions_differ(30, 100, 45, 100, z=Z_95)
    assert not proportions_differ(30, 100, 45, 100, z=2.5)
    assert not proportions_differ(30, 100, 0, 0, z=Z_95)
    assert not proportions_differ(0, 50, 0, 80, z=Z_95)
    assert proportions_differ(0, 50, 1, 1, z=1.0)
    rng = np.random.default_rng(8)
    same = [
        proportions_differ(rng.binomial(300, 0.3), 300, rng.binomial(900, 0.3), 900, z=Z_95)
        for _ in range(4000)
    ]
    assert 0.03 <= np.mean(same) <= 0.07
