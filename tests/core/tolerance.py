"""How far the summary path and the full-vector path may disagree, from float64 rounding alone.

Both paths take differences of logits before exponentiating, and a rounded difference is off by
at most half an ulp of the difference, so log p is off by ~eps * |log p| plus the rounding of the
sums (~V * eps). The one real loss is in the summary: it keeps L = M + log S (M the largest
non-refusal logit, 1 <= S <= V) as one float, which is off by at most min(ulp(L), log S): near
1e30 two non-refusal tokens tied at the top lose log 2 that the full vector still sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = float(np.finfo(np.float64).eps)
ATOL = 1e-14


def partition_rounding(
    z: np.ndarray, ids: Sequence[int], temperature: np.ndarray | float = 1.0
) -> np.ndarray:
    """(N,) bound on the error of the stored L_T = logsumexp of non-refusal logits / T."""
    keep = np.ones(z.shape[1], dtype=bool)
    keep[list(ids)] = False
    x = (
        z[:, keep]
        / np.broadcast_to(np.asarray(temperature, dtype=np.float64), (z.shape[0],))[:, None]
    )
    top = x.max(axis=1)
    log_s = np.log(np.exp(x - top[:, None]).sum(axis=1))
    return np.minimum(np.spacing(np.abs(top + log_s)), log_s)


def log_error_bound(rounding: np.ndarray) -> np.ndarray:
    """(N, 1) bound on |log p_summary - log p_full| for p above underflow (|log p| < 746)."""
    return 1e-12 + 8 * EPS * 746 + np.asarray(rounding)[:, None]


def assert_probs_close(actual: np.ndarray, expected: np.ndarray, err: np.ndarray) -> None:
    """|actual - expected| within the log-space bound `err` (relative) plus `ATOL` (absolute)."""
    tol = ATOL + np.expm1(err) * np.maximum(np.abs(actual), np.abs(expected))
    bad = ~(np.abs(actual - expected) <= tol)
    assert not bad.any(), f"actual={actual[bad]} expected={expected[bad]} bound={err[bad]}"
