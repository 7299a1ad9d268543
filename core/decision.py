"""The refusal decision rules of DESIGN section 5, vectorised over prompts, from summaries alone.

Decisions are int arrays (N,): -1 means respond, otherwise the index of the refused category in
`CATEGORIES`. Every exponential is taken of a difference from the row's largest logit, so huge
or -inf logits neither overflow nor produce nan. Calibration evaluates these rules over stored summaries; tests check them against
the same rules applied to full logit vectors.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from core.summary import N_CATEGORIES, Summaries

RESPOND_DECISION = -1


def _per_row(values: ArrayLike, n: int, name: str) -> np.ndarray:
    """Broadcast (C,) or (N, C) per-category parameters to (N, C) float64."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape not in ((N_CATEGORIES,), (n, N_CATEGORIES)):
        raise ValueError(f"{name} must have shape ({N_CATEGORIES},) or ({n}, {N_CATEGORIES})")
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain nan")
    return np.broadcast_to(arr, (n, N_CATEGORIES))


def _biases(biases: ArrayLike, n: int) -> np.ndarray:
    b = _per_row(biases, n, "biases")
    if np.isposinf(b).any():
        raise ValueError("biases must be finite or -inf")
    return b


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax shifted by the row max and normalised in linear space.

    Normalising exp(x - max) by its sum (rather than subtracting a logsumexp) keeps rows summing
    to 1 even when equal huge logits would absorb log(k) into the logsumexp.
    """
    top = logits.max(axis=1, keepdims=True)  # finite: every row has a finite L_1 or L_T
    weights = np.exp(logits - top)
    normalised: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
    return normalised


def refusal_probabilities(summ: Summaries) -> np.ndarray:
    """(N, C) first-token probabilities p_c = exp(s_c) / (exp(L_1) + sum_k exp(s_k))."""
    return _softmax(np.concatenate([summ.s, summ.l1[:, None]], axis=1))[:, :N_CATEGORIES]


def _first_best(keys: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(N,) index of the largest key among allowed columns (lowest index on ties), or -1."""
    masked = np.where(allowed, keys, -np.inf)
    best = masked.max(axis=1, keepdims=True)
    winner = np.argmax(allowed & (masked == best), axis=1)
    return np.where(allowed.any(axis=1), winner, RESPOND_DECISION)


def threshold_decision(summ: Summaries, thresholds: ArrayLike) -> np.ndarray:
    """(N,) refuse with the most probable category whose p_c >= tau_c (and s_c > -inf); -1 when
    none qualifies.

    The most probable category is found by comparing logits s_c, which orders the categories
    exactly like p_c (shared denominator) but is not tied by underflow of p_c to 0.
    """
    tau = _per_row(thresholds, len(summ), "thresholds")
    # s_c = -inf (the model has no token for c) is never eligible, even at tau = 0.
    eligible = (refusal_probabilities(summ) >= tau) & (summ.s > -np.inf)
    return _first_best(summ.s, eligible)


def greedy_bias_decision(summ: Summaries, biases: ArrayLike) -> np.ndarray:
    """(N,) greedy first token with biases added to the refusal logits.

    Refuse with c iff s_c + b_c > m and c has the largest biased refusal logit (lowest index on
    ties). This equals argmax over the full vocabulary when the refusal tokens come after every
    other token, in `CATEGORIES` order (argmax returns the first maximum).
    """
    biased = summ.s + _biases(biases, len(summ))
    winner = np.argmax(biased, axis=1)
    top = np.take_along_axis(biased, winner[:, None], axis=1)[:, 0]
    return np.where(top > summ.m, winner, RESPOND_DECISION)


def sampled_bias_probabilities(summ: Summaries, biases: ArrayLike) -> np.ndarray:
    """(N, C+1) probability of sampling each refusal token at the row's temperature, then respond.

    P(c) = exp((s_c+b_c)/T) / (exp(L_T) + sum_k exp((s_k+b_k)/T)); the last column is
    exp(L_T) / (same), the probability of any non-refusal first token. Rows sum to 1.
    """
    scaled = (summ.s + _biases(biases, len(summ))) / summ.temperature[:, None]
    return _softmax(np.concatenate([scaled, summ.lt[:, None]], axis=1))


def refusal_score(summ: Summaries) -> np.ndarray:
    """(N, C) log-odds log(p_c / (1 - p_c)) = s_c - logsumexp(L_1, s_k for k != c).

    The large terms cancel before any log is taken, so the score stays exact-ish even for huge
    logits. -inf when s_c is -inf; otherwise finite because L_1 is finite.
    """
    n = len(summ)
    rest = np.empty((n, N_CATEGORIES, N_CATEGORIES + 1))  # (N, C, C+1): for each c, all but c
    rest[:, :, :N_CATEGORIES] = summ.s[:, None, :]
    diagonal = np.arange(N_CATEGORIES)
    rest[:, diagonal, diagonal] = -np.inf
    rest[:, :, N_CATEGORIES] = summ.l1[:, None]
    top = rest.max(axis=2)  # (N, C), finite
    score: np.ndarray = (summ.s - top) - np.log(np.exp(rest - top[:, :, None]).sum(axis=2))
    return score
