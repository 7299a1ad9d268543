"""Replaying a policy's rules over stored first-token summaries (what-if and shadow decisions).

The engine decides a threshold-mode row with `threshold_decision` and a bias-mode row with
`greedy_bias_decision` when it decodes greedily (temperature 0); a sampled bias-mode row draws
its first token, refusing c with `sampled_bias_probabilities`. So from a summary and whether the
row was greedy, the chance a rule refuses it with each category is known exactly, no model needed.
"""

from __future__ import annotations

import numpy as np

from core.decision import (
    RESPOND_DECISION,
    greedy_bias_decision,
    sampled_bias_probabilities,
    threshold_decision,
)
from core.policy import PolicyRules, bias_vector, threshold_vector
from core.summary import N_CATEGORIES, Summaries


def one_hot(decisions: np.ndarray) -> np.ndarray:
    """(N, C) float: 1 in the refused category's column, a zero row for respond (-1)."""
    hot: np.ndarray = (decisions[:, None] == np.arange(N_CATEGORIES)).astype(np.float64)
    return hot


def refusal_chances(rules: PolicyRules, summ: Summaries, greedy: np.ndarray) -> np.ndarray:
    """(N, C) the probability that `rules` refuse each row with each category.

    0 or 1 for threshold rules and greedy rows (`greedy` (N,) bool); for a sampled bias-mode row,
    the probability of drawing that category's token at the row's temperature (without top-p,
    which the summary cannot replay: exact for top_p = 1).
    """
    if rules.mode == "threshold":
        return one_hot(threshold_decision(summ, threshold_vector(rules)))
    biases = bias_vector(rules)
    chances = one_hot(greedy_bias_decision(summ, biases))
    sampled = ~np.asarray(greedy, dtype=bool)
    if sampled.any():
        drawn = sampled_bias_probabilities(summ.take(sampled), biases)  # (S, C + 1)
        chances[sampled] = drawn[:, :N_CATEGORIES]
    return chances


def draw_decisions(chances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) one decision per row drawn from `refusal_chances` (exact where they are 0 or 1):
    the index of the refused category, or -1 for respond."""
    n = chances.shape[0]
    cumulative = np.cumsum(chances, axis=1)  # (N, C)
    u = np.asarray(rng.random(size=n), dtype=np.float64)  # (N,)
    picked = (u[:, None] < cumulative).argmax(axis=1)
    refused = u < cumulative[:, -1]
    return np.where(refused, picked, RESPOND_DECISION)
