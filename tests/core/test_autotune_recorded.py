"""The auto-tuner on recorded real-prompt scores (`tests/core/autotune_traffic.py`): on target in
at most 3 rounds of 15 s from any start, then steady.

"On target" is the expected refusal rate of the threshold in force on the traffic distribution
(the recorded set), within 5 points of the 30% target; "steady" is: it stays within 5 points to
the end of the 20-minute run and the direction of the threshold's moves reverses at most once.

Every round replays the active rules over the whole window, whatever version served it, so the
tuner moves in its first round and never waits for a new version's requests. What it cannot
escape is the window's size: at 4 requests a second a 60 s window (the issue's) holds 240
requests, whose 30% quantile is itself uncertain by about 6 points (95%), and whose Wilson
interval cannot tell 23% from 30% at 99.9%. So the goal is checked with a 300 s window (1,200
requests); with the issue's 60 s window the test checks what does hold there: the first round
moves as far as the window's evidence allows, and nothing oscillates.
`python -m bench.autotune_rounds` gives the figures for both (docs/calibration.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.core.autotune_traffic import RECORDED, Setting, expected_rate, safety_only, simulate

TARGET = 0.30
TOLERANCE = 0.05
MAX_ROUNDS = 3
SEEDS = range(10)
STARTS = [0.0, 0.001, 0.05, 0.2, 0.5, 0.95, 1.0]
GOAL_SETTING = Setting(window_seconds=300.0)
ISSUE_SETTING = Setting(window_seconds=60.0)


def test_the_recorded_scores_are_a_real_spread() -> None:
    assert len(RECORDED) > 300
    # Some prompts are clearly safety refusals, most clearly not, and the 30% target lies in
    # between: the tuner has to find a threshold far from any default.
    rate = {t: expected_rate(safety_only(t, TARGET)) for t in (0.01, 0.5, 0.95)}
    assert 0.1 < rate[0.95] < rate[0.5] < TARGET < rate[0.01]


@pytest.mark.parametrize("start", STARTS)
def test_within_5_points_in_at_most_3_rounds_from_any_start_then_steady(start: float) -> None:
    for seed in SEEDS:
        run = simulate(start, seed, GOAL_SETTING)
        rounds = run.rounds_to_within(TARGET, TOLERANCE)
        assert rounds is not None and rounds <= MAX_ROUNDS, (start, seed, run.rates)
        assert run.reversals_from(rounds) <= 1, (start, seed, run.thresholds)


def test_with_the_issues_60_s_window_it_moves_at_once_as_far_as_the_evidence_allows() -> None:
    """From 0.95 (15.6% of traffic) the first round moves, in every run, to where the window's
    240 requests put the 30% quantile: within 3 standard errors of that sample (8.9 points);
    and no run oscillates."""
    noise = 3 * math.sqrt(TARGET * (1 - TARGET) / 240)
    for seed in SEEDS:
        run = simulate(0.95, seed, ISSUE_SETTING)
        assert run.thresholds[1] != 0.95, (seed, run.thresholds[:3])
        assert abs(run.rates[1] - TARGET) <= noise, (seed, run.rates[:3])
        assert run.reversals_from(1) <= 1, (seed, run.thresholds)
    assert np.isclose(expected_rate(safety_only(0.95, TARGET)), 0.156, atol=0.001)
