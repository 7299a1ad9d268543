"""Replaying rules over summaries gives the decisions core's rules give, per mode and row kind."""

from __future__ import annotations

import numpy as np

from core.decision import greedy_bias_decision, sampled_bias_probabilities, threshold_decision
from core.policy import bias_vector, parse_rules, threshold_vector
from core.replay import draw_decisions, one_hot, refusal_chances
from core.summary import N_CATEGORIES, Summaries


def random_summaries(rng: np.random.Generator, n: int) -> Summaries:
    s = rng.normal(0.0, 3.0, (n, N_CATEGORIES))
    s[rng.random((n, N_CATEGORIES)) < 0.05] = -np.inf
    m = rng.normal(2.0, 2.0, n)
    temperature = rng.choice([1.0, 0.7], n)
    return Summaries(s, m, m + 1.0, m / temperature + 1.0, temperature)


THRESHOLD = parse_rules(
    {
        "mode": "threshold",
        "categories": {"safety": {"threshold": 0.3}, "incomplete": {"threshold": 0.6}},
    }
)
BIAS = parse_rules(
    {"mode": "bias", "categories": {"safety": {"bias": 2.0}, "humanizing": {"bias": "off"}}}
)


def test_threshold_rows_are_decided_by_the_threshold_rule_whatever_their_sampling() -> None:
    summ = random_summaries(np.random.default_rng(0), 500)
    greedy = np.arange(500) % 2 == 0
    chances = refusal_chances(THRESHOLD, summ, greedy)
    np.testing.assert_array_equal(
        chances, one_hot(threshold_decision(summ, threshold_vector(THRESHOLD)))
    )


def test_bias_rows_are_greedy_decisions_or_sampling_probabilities() -> None:
    summ = random_summaries(np.random.default_rng(1), 500)
    greedy = np.arange(500) % 3 != 0
    chances = refusal_chances(BIAS, summ, greedy)
    biases = bias_vector(BIAS)
    np.testing.assert_array_equal(
        chances[greedy], one_hot(greedy_bias_decision(summ, biases))[greedy]
    )
    sampled = sampled_bias_probabilities(summ, biases)[:, :N_CATEGORIES]
    np.testing.assert_allclose(chances[~greedy], sampled[~greedy])
    assert (chances[:, 3] == 0).all()  # humanizing is off


def test_drawn_decisions_are_exact_for_certain_rows_and_unbiased_for_sampled_ones() -> None:
    rng = np.random.default_rng(2)
    certain = one_hot(np.array([-1, 0, 4, 2]))
    np.testing.assert_array_equal(draw_decisions(certain, rng), [-1, 0, 4, 2])
    chances = np.tile([0.1, 0.0, 0.2, 0.0, 0.3], (40_000, 1))
    drawn = draw_decisions(chances, rng)
    shares = [(drawn == c).mean() for c in (-1, 0, 2, 4)]
    np.testing.assert_allclose(shares, [0.4, 0.1, 0.2, 0.3], atol=0.01)
