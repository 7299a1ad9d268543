"""The auto-tuner judges the active rules on the whole window by replay, moves within its guards,
and tracks drift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.autotune import (
    TuneDecision,
    TuneGuards,
    propose_threshold,
    replayed_refusals,
)
from core.categories import CATEGORIES
from core.policy import PolicyRules, parse_rules
from core.summary import Summaries
from tests.core.autotune_traffic import CATEGORY, safety_only, safety_scores
from tests.core.strategies import PROPERTY

GUARDS = TuneGuards()


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def logistic_window(seed: int, mean: float, n: int) -> np.ndarray:
    """Log-odds of p_safety of n requests, logistic (scale 1) around `mean`."""
    return np.random.default_rng(seed).logistic(mean, 1.0, n)


def rate_on(window: Summaries, rules: PolicyRules) -> float:
    return replayed_refusals(window, rules, CATEGORY) / len(window)


def propose(
    x: np.ndarray, threshold: float, target: float, guards: TuneGuards = GUARDS, **rule: float
) -> TuneDecision:
    rules = safety_only(threshold, target)
    if rule:
        rules = rules.with_rules({CATEGORY: rules.rule(CATEGORY).model_copy(update=rule)})
    return propose_threshold(safety_scores(x), rules=rules, category=CATEGORY, guards=guards)


def test_the_active_rules_are_judged_on_every_request_of_the_window() -> None:
    x = logistic_window(0, -1.0, 1000)
    decision = propose(x, 0.5, 0.9)
    assert decision.samples == 1000
    assert decision.replayed_rate == pytest.approx((sigmoid(x) >= 0.5).mean())


def test_strong_evidence_goes_straight_to_the_threshold_that_meets_the_target_on_the_window() -> (
    None
):
    x = logistic_window(1, -1.0, 1000)
    decision = propose(x, 0.5, 0.10)
    assert decision.changed and decision.new_threshold > 0.5
    assert rate_on(safety_scores(x), safety_only(decision.new_threshold, 0.1)) == pytest.approx(
        0.10
    )


def test_other_categories_compete_in_the_replay_and_the_solve() -> None:
    """With `incomplete` on and winning some requests, the solved safety threshold still gives
    exactly the target on the window under the whole rules."""
    rng = np.random.default_rng(2)
    n = 2000
    s = np.full((n, len(CATEGORIES)), -np.inf)
    s[:, CATEGORIES.index(CATEGORY)] = rng.logistic(-1.0, 1.0, n)
    s[:, CATEGORIES.index("incomplete")] = rng.logistic(-1.0, 1.0, n)
    zero = np.zeros(n)
    window = Summaries(s, zero, zero, zero, np.ones(n))
    rules = parse_rules(
        {
            "mode": "threshold",
            "categories": {
                **{c: {"enabled": False} for c in CATEGORIES},
                "incomplete": {"threshold": 0.3},
                CATEGORY: {"threshold": 0.5, "target_rate": 0.1, "auto_tune": True},
            },
        }
    )
    decision = propose_threshold(window, rules=rules, category=CATEGORY, guards=GUARDS)
    assert decision.changed
    moved = rules.with_rules(
        {CATEGORY: rules.rule(CATEGORY).model_copy(update={"threshold": decision.new_threshold})}
    )
    assert rate_on(window, moved) == pytest.approx(0.1)


def test_each_guard_stops_a_change() -> None:
    x = logistic_window(3, -1.0, 1000)
    served = (sigmoid(x) >= 0.5).mean()
    few = propose(x[:199], 0.5, 0.05)
    assert not few.changed and "199 requests" in few.reason
    calm = propose(x, 0.5, float(served) + 0.01)
    assert not calm.changed and "noise" in calm.reason
    dead_band = propose(x, 0.5, float(served) + 0.04, TuneGuards(hysteresis=0.05))
    assert not dead_band.changed and "within 0.05" in dead_band.reason


def test_it_moves_only_on_strong_evidence() -> None:
    x = logistic_window(4, -1.0, 1500)  # about 20% at 0.6
    rate = float((sigmoid(x) >= 0.6).mean())
    guards = TuneGuards(min_samples=1, hysteresis=0.0)
    # 1.5 standard errors off: noise; 2.5: outside 95% but inside 99.9%, weak; 4: strong.
    se = math.sqrt(rate * (1 - rate) / len(x))
    noisy = propose(x, 0.6, rate + 1.5 * se, guards)
    assert not noisy.changed and "noise" in noisy.reason
    weak = propose(x, 0.6, rate + 2.5 * se, guards)
    assert not weak.changed and "weak evidence" in weak.reason
    strong = propose(x, 0.6, rate + 4.5 * se, guards)
    assert strong.changed and strong.new_threshold < 0.6


def test_a_gap_just_wider_than_the_step_is_closed_in_two_equal_moves_not_stalled() -> None:
    """30 points with a 25-point bound: one full step would leave 5 points, which the next
    window's noise can put in the weak-evidence band, where the tuner waits (13 rounds in one
    recorded-traffic run). Two moves of 15 leave no such remainder: the second one is taken."""
    x = logistic_window(7, -1.0, 1200)
    window = safety_scores(x)
    guards = TuneGuards(min_samples=150)
    first = propose(x, 1.0, 0.3, guards)
    middle = rate_on(window, safety_only(first.new_threshold, 0.3))
    assert middle == pytest.approx(0.15, abs=1 / len(x)) and "2 equal moves" in first.reason
    second = propose(x, first.new_threshold, 0.3, guards)
    assert second.changed
    assert rate_on(window, safety_only(second.new_threshold, 0.3)) == pytest.approx(0.3, abs=0.002)


def test_the_move_is_bounded_in_refusal_rate_and_the_bounds_hold() -> None:
    x = logistic_window(5, -1.0, 1000)
    window = safety_scores(x)
    big = propose(x, 0.99, 0.9, TuneGuards(max_rate_step=0.1))
    before = rate_on(window, safety_only(0.99, 0.9))
    after = rate_on(window, safety_only(big.new_threshold, 0.9))
    # The gap is closed in the fewest equal moves of at most 0.1 (to the nearest request).
    moves = math.ceil((0.9 - before) / 0.1)
    assert after - before == pytest.approx((0.9 - before) / moves, abs=1 / len(x))
    assert after - before <= 0.1 and f"{moves} equal moves" in big.reason
    capped = propose(x, 0.5, 0.05, max_threshold=0.52)
    assert capped.new_threshold == 0.52 and "held within" in capped.reason
    pinned = propose(x, 0.52, 0.05, min_threshold=0.52, max_threshold=0.52)
    assert not pinned.changed


def test_the_newest_slice_counts_alone_when_the_traffic_drifted() -> None:
    old, new = logistic_window(6, -2.0, 3000), logistic_window(7, -0.5, 1000)
    rules = safety_only(0.5, 0.2)
    window = safety_scores(np.concatenate([old, new]))
    parts = [1000, 1000, 1000, 1000]
    drifted = propose_threshold(window, rules=rules, category=CATEGORY, guards=GUARDS, parts=parts)
    assert "traffic drifted" in drifted.reason and drifted.samples == 1000
    assert rate_on(safety_scores(new), safety_only(drifted.new_threshold, 0.2)) == pytest.approx(
        0.2
    )
    steady = safety_scores(logistic_window(8, -1.0, 4000))
    calm = propose_threshold(steady, rules=rules, category=CATEGORY, guards=GUARDS, parts=parts)
    assert "drifted" not in calm.reason and calm.samples == 4000


@PROPERTY
@given(
    mean=st.floats(-4.0, 4.0),
    n=st.integers(1, 400),
    current=st.floats(0.0, 1.0),
    target=st.floats(0.0, 1.0),
    bounds=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(sorted),
    max_rate_step=st.floats(0.001, 0.5),
    seed=st.integers(0, 2**16),
)
def test_never_moves_the_rate_further_than_max_rate_step_nor_past_the_bounds(
    mean: float,
    n: int,
    current: float,
    target: float,
    bounds: list[float],
    max_rate_step: float,
    seed: int,
) -> None:
    low, high = bounds
    current = min(max(current, low), high)
    # Rounded log-odds: ties are common, as in real scores.
    x = np.round(np.random.default_rng(seed).logistic(mean, 2.0, n), 1)
    guards = TuneGuards(min_samples=1, max_rate_step=max_rate_step, hysteresis=0.0)
    decision = propose(x, current, target, guards, min_threshold=low, max_threshold=high)
    assert low <= decision.new_threshold <= high
    if decision.changed:
        window = safety_scores(x)
        before = rate_on(window, safety_only(current, target))
        after = rate_on(window, safety_only(decision.new_threshold, target))
        ties = int(np.unique(x, return_counts=True)[1].max())  # one step of the rate
        assert abs(after - before) <= max_rate_step + ties / n + 1e-9
        assert decision.replayed_rate is not None  # it moves against the error
        assert (decision.new_threshold - current) * (decision.replayed_rate - target) > 0


ROUNDS_TO_RECOVER = 3
WINDOW = 5


def test_drifting_traffic_returns_within_hysteresis_in_3_rounds_and_does_not_oscillate() -> None:
    """Logistic p_safety whose mean log-odds shifts every 30 rounds; 5,000 requests a round.

    The tuner reads the last 5 rounds of traffic, every request replayed under the active rules,
    in 4 slices for the drift check. The shifts move the threshold that meets the 20% target by
    up to 0.35, so after each one the window's newest slice differs from the rest, and the
    tuner solves on the slices after the shift: from 3 rounds after each shift on every round's
    achieved rate is within hysteresis (0.02) plus sampling noise (3 standard errors, 0.017) of
    the target, and the threshold never changes direction.
    """
    rng = np.random.default_rng(2024)
    target, n, noise = 0.2, 5000, 3 * math.sqrt(0.2 * 0.8 / 5000)
    threshold, window = 0.5, np.zeros(0)
    for mean in (-2.0, -1.0, -2.5, -1.5):  # ideal thresholds 0.35, 0.60, 0.25, 0.47
        achieved, steps = [], []
        for _ in range(30):
            x = rng.logistic(mean, 1.0, n)
            achieved.append((sigmoid(x) >= threshold).mean())
            window = np.concatenate([window, x])[-WINDOW * n :]
            quarter = len(window) // 4
            decision = propose_threshold(
                safety_scores(window),
                rules=safety_only(threshold, target),
                category=CATEGORY,
                guards=GUARDS,
                parts=[quarter, quarter, quarter, len(window) - 3 * quarter],
            )
            steps.append(decision.new_threshold - threshold)
            threshold = decision.new_threshold
        settled = np.abs(np.array(achieved[ROUNDS_TO_RECOVER:]) - target)
        assert (settled <= GUARDS.hysteresis + noise).all(), (mean, achieved)
        moves = np.sign([s for s in steps[ROUNDS_TO_RECOVER:] if s != 0.0])
        assert int((moves[1:] != moves[:-1]).sum()) == 0, (mean, steps)
