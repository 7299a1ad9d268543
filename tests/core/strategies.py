"""Hypothesis strategies for first-step logits, biases, thresholds and temperatures.

Logits mix moderate values, small integers (so exact ties are common), -inf and +-1e30; every row
keeps at least one finite non-refusal logit, as a real model's output does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from core.categories import CATEGORIES

C = len(CATEGORIES)
HUGE = 1e30
#: Settings for every property test here; RCS_HYPOTHESIS_EXAMPLES=5000 for a thorough run.
PROPERTY = settings(
    max_examples=int(os.environ.get("RCS_HYPOTHESIS_EXAMPLES", "200")), deadline=None
)

logit_values = st.one_of(
    st.floats(-60.0, 60.0),
    st.integers(-3, 3).map(float),
    st.sampled_from([-np.inf, HUGE, -HUGE, 0.0]),
)
bias_values = st.one_of(
    st.floats(-60.0, 60.0),
    st.integers(-3, 3).map(float),
    st.sampled_from([-np.inf, HUGE, -HUGE, 1e200, 0.0]),
)
threshold_values = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.5]))
temperatures = st.floats(0.1, 5.0)


@dataclass(frozen=True)
class LogitCase:
    """(N, V) logits with the C refusal token ids (in `CATEGORIES` order) and row temperatures."""

    z: np.ndarray
    ids: tuple[int, ...]
    temperature: np.ndarray


@st.composite
def logit_cases(draw: st.DrawFn, *, refusal_last: bool = False) -> LogitCase:
    """Random logits; refusal tokens at random positions, or last in order (greedy argmax)."""
    n = draw(st.integers(1, 6))
    vocab = C + draw(st.integers(1, 8))
    z = np.array(draw(st.lists(logit_values, min_size=n * vocab, max_size=n * vocab)))
    z = z.reshape(n, vocab)
    if refusal_last:
        ids = tuple(range(vocab - C, vocab))
    else:
        ids = tuple(draw(st.permutations(range(vocab)))[:C])
    others = [j for j in range(vocab) if j not in ids]
    for row in range(n):
        if np.isneginf(z[row, others]).all():
            z[row, draw(st.sampled_from(others))] = draw(st.floats(-60.0, 60.0))
    temps = np.array(draw(st.lists(temperatures, min_size=n, max_size=n)))
    return LogitCase(z=z, ids=ids, temperature=temps)


def per_category(values: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    """(C,) vectors of the given element strategy."""
    return st.lists(values, min_size=C, max_size=C).map(np.array)


def per_row(values: st.SearchStrategy[float], n: int) -> st.SearchStrategy[np.ndarray]:
    """(C,) or (n, C) parameter arrays, both shapes the decision functions accept."""
    full = st.lists(values, min_size=n * C, max_size=n * C).map(lambda v: np.array(v).reshape(n, C))
    return st.one_of(per_category(values), full)
