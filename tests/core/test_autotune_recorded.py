"""The auto-tuner on recorded real-prompt scores: on target in at most 3 moves from any start,
then steady.

`tests/data/first_token_scores.json` holds the tiny model's first-token summaries of 366
real-ish prompts (the hand-written probe of every class and the engine tests' prompt set;
`python -m tests.data.record_first_token_scores` records them again). Traffic is drawn from
them with replacement, in the issue's setting: one policy with only `safety` on, a 30% target,
a round every 15 s, 150 samples at least, 4 requests a second; as the worker reads them, the
evidence (requests, refusals) is the active version's within the window (`refusal_stats` is
kept per version) and the histogram pools every version's scores of the window. The rate a
threshold serves is measured on the whole recorded set, so "on target" is a property of the
threshold, not of one round's luck.

The window is 300 s, not the issue's 60 s: at 4 requests a second 60 s hold 240 requests, whose
30% quantile is itself uncertain by +-6 points (95%), so no tuner reading 60 s can promise to
land within 5 points and stay there; 300 s (1,200 requests) can. "Steady" is the worker test's
criterion: once on target, every later threshold serves within 5 points and the direction of
the moves reverses at most once in 20 minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.autotune import TuneGuards, propose_threshold
from core.categories import category_index
from core.decision import refusal_probabilities
from core.histogram import histogram_of
from core.summary import Summaries

SCORES = Path(__file__).parents[1] / "data" / "first_token_scores.json"
TARGET = 0.30
TOLERANCE = 0.05
REQUESTS_PER_ROUND = 60  # 4 requests/s, a round every 15 s
WINDOW_ROUNDS = 20  # 300 s
GUARDS = TuneGuards(min_samples=150)
MAX_MOVES = 3
STEADY_ROUNDS = 80  # 20 minutes
SEEDS = range(10)


def recorded_p_safety() -> np.ndarray:
    rows = json.loads(SCORES.read_text())["rows"]
    summaries = Summaries.from_rows([r["summary"] for r in rows])
    p: np.ndarray = refusal_probabilities(summaries)[:, category_index("safety")]
    return p


P_SAFETY = recorded_p_safety()


def served_rate(threshold: float) -> float:
    return float((threshold <= P_SAFETY).mean())


def run(start: float, seed: int) -> list[tuple[float, bool]]:
    """(threshold, moved) per round."""
    rng = np.random.default_rng(seed)
    threshold, history = start, []
    scores: list[list[int]] = []  # every version's histograms in the window
    window: list[tuple[list[int], int]] = []  # the active version's histograms and refusals
    for _ in range(STEADY_ROUNDS):
        p = rng.choice(P_SAFETY, REQUESTS_PER_ROUND)
        scores = [*scores, histogram_of(p)][-WINDOW_ROUNDS:]
        window = [*window, (histogram_of(p), int((p >= threshold).sum()))][-WINDOW_ROUNDS:]
        decision = propose_threshold(
            np.sum([h for h, _ in window], axis=0).tolist(),
            pooled=np.sum(scores, axis=0).tolist(),
            current=threshold,
            target=TARGET,
            requests=REQUESTS_PER_ROUND * len(window),
            refusals=sum(r for _, r in window),
            guards=GUARDS,
            min_threshold=0.0,
            max_threshold=1.0,
        )
        history.append((decision.new_threshold, decision.changed))
        threshold = decision.new_threshold
        if decision.changed:  # a new version: its statistics start empty
            window = []
    return history


def test_the_recorded_scores_are_a_real_spread() -> None:
    assert len(P_SAFETY) > 300
    # Some prompts are clearly safety refusals, most clearly not, and the 30% target lies in
    # between: the tuner has to find a threshold far from any default.
    assert 0.1 < served_rate(0.5) < TARGET < served_rate(0.01)


@pytest.mark.parametrize("start", [0.001, 0.01, 0.1, 0.5, 0.9, 0.95, 0.999])
def test_on_target_within_three_moves_from_any_start_then_steady(start: float) -> None:
    for seed in SEEDS:
        history = run(start, seed)
        moves = [i for i, (_, moved) in enumerate(history) if moved]
        on_target = [
            i for i, (t, _) in enumerate(history) if abs(served_rate(t) - TARGET) <= TOLERANCE
        ]
        assert on_target, (start, seed, history)
        first = on_target[0]
        assert sum(1 for i in moves if i <= first) <= MAX_MOVES, (start, seed, history)
        steady = [served_rate(t) for t, _ in history[first:]]
        assert max(abs(r - TARGET) for r in steady) <= TOLERANCE, (start, seed, steady)
        thresholds = [t for t, _ in history[first:]]
        steps = np.sign(np.diff(thresholds))
        steps = steps[steps != 0]
        assert int((steps[1:] != steps[:-1]).sum()) <= 1, (start, seed, thresholds)
