"""Reference implementations of the decision rules applied to full first-step logit vectors.

These are what a sampler does with the whole vocabulary (bias the refusal tokens, argmax or
softmax); the core computes the same rules from summaries. Rows are (N, V) float64 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """(N, V) softmax over the whole vocabulary, as torch computes it: shift by max, normalise."""
    weights = np.exp(z - z.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def biased(z: np.ndarray, ids: Sequence[int], biases: np.ndarray) -> np.ndarray:
    """A copy of the logits with each category's bias added to its refusal token."""
    out = z.copy()
    out[:, list(ids)] += np.broadcast_to(biases, (z.shape[0], len(ids)))
    return out


def probabilities(z: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """(N, C) softmax probability of each refusal token over the full vocabulary."""
    return softmax(z)[:, list(ids)]


def log_probabilities(z: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """(N, C) log p_c without underflow: (z[r_c] - max) - log(sum(exp(z - max)))."""
    top = z.max(axis=1, keepdims=True)
    return (z[:, list(ids)] - top) - np.log(np.exp(z - top).sum(axis=1, keepdims=True))


def threshold_decision(z: np.ndarray, ids: Sequence[int], thresholds: np.ndarray) -> np.ndarray:
    """Most probable refusal token among those with p_c >= tau_c, from the full softmax.

    "Most probable" is exact-arithmetic argmax p: float p ties whose logits differ (e.g. both
    underflowed to 0) are broken by the larger logit, since p_c is proportional to exp(z[r_c]);
    remaining ties go to the lowest category index. A token of logit -inf can never be drawn,
    so it is never eligible, even at tau_c = 0.
    """
    p = probabilities(z, ids)
    logit = z[:, list(ids)]
    eligible = (p >= np.broadcast_to(thresholds, p.shape)) & (logit > -np.inf)
    out = np.full(z.shape[0], -1)
    for row in range(z.shape[0]):
        cands = [c for c in range(len(ids)) if eligible[row, c]]
        if cands:
            out[row] = max(cands, key=lambda c: (p[row, c], logit[row, c], -c))
    return out


def greedy_decision(z: np.ndarray, ids: Sequence[int], biases: np.ndarray) -> np.ndarray:
    """argmax over the biased full vocabulary (first maximum), mapped to a category or -1."""
    winner = np.argmax(biased(z, ids, biases), axis=1)
    position = {tid: c for c, tid in enumerate(ids)}
    return np.array([position.get(int(w), -1) for w in winner])


def sampled_probabilities(
    z: np.ndarray, ids: Sequence[int], biases: np.ndarray, temperature: np.ndarray
) -> np.ndarray:
    """(N, C+1) full softmax of biased logits / T: each refusal token, then all others summed."""
    p = softmax(biased(z, ids, biases) / temperature[:, None])
    keep = np.ones(z.shape[1], dtype=bool)
    keep[list(ids)] = False
    return np.concatenate([p[:, list(ids)], p[:, keep].sum(axis=1, keepdims=True)], axis=1)


def log_odds(z: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """(N, C) log(p_c / (1 - p_c)) = z[r_c] - logsumexp of every other token of the vocabulary."""
    out = np.empty((z.shape[0], len(ids)))
    for c, tid in enumerate(ids):
        rest = np.delete(z, tid, axis=1)
        top = rest.max(axis=1)
        out[:, c] = (z[:, tid] - top) - np.log(np.exp(rest - top[:, None]).sum(axis=1))
    return out


def log_partition(z: np.ndarray) -> np.ndarray:
    """(N,) logsumexp over the whole vocabulary."""
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))
