"""The fixed log-odds bins of the first-token refusal score histograms (mergeable by addition).

A score is `log(p / (1 - p))`; bins are `BIN_WIDTH` wide from `LOGODDS_MIN` to `LOGODDS_MAX`,
the outermost bins also hold everything beyond them.
"""

from __future__ import annotations

import numpy as np

HISTOGRAM_BINS = 64
LOGODDS_MIN = -16.0
LOGODDS_MAX = 16.0
BIN_WIDTH = (LOGODDS_MAX - LOGODDS_MIN) / HISTOGRAM_BINS


def logodds(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped away from 0 and 1 (finite everywhere)."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(q) - np.log1p(-q)


def bin_index(score: np.ndarray) -> np.ndarray:
    """The bin of each log-odds score (int array, same shape)."""
    idx = np.floor((np.asarray(score, dtype=np.float64) - LOGODDS_MIN) / BIN_WIDTH)
    return np.clip(idx, 0, HISTOGRAM_BINS - 1).astype(np.int64)


def bin_edges() -> np.ndarray:
    """The `HISTOGRAM_BINS + 1` edges in log-odds."""
    return np.linspace(LOGODDS_MIN, LOGODDS_MAX, HISTOGRAM_BINS + 1)


def histogram_of(p: np.ndarray) -> list[int]:
    """Counts of the probabilities `p` (1-D) over the bins."""
    counts: list[int] = np.bincount(
        bin_index(logodds(p)).ravel(), minlength=HISTOGRAM_BINS
    ).tolist()
    return counts
