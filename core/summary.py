"""First-token summaries (DESIGN section 5): all the decision rules need from a prompt's logits.

For logits `z` at the first decoding step, a summary keeps the refusal-token logits `s_c`, the
largest non-refusal logit `m` and the non-refusal log-partition `L_1` (and `L_T` at the row's
temperature). `[respond]` is a non-refusal token. Calibration stores summaries so new targets can
be solved without running the model again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from core.categories import CATEGORIES

N_CATEGORIES = len(CATEGORIES)


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable log(sum(exp(x))) along `axis`; -inf where every entry is -inf (x has no +inf/nan)."""
    top = np.max(x, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    squeezed: np.ndarray = np.squeeze(out, axis=axis)
    return squeezed


class SummaryRow(TypedDict):
    """One prompt's summary as stored JSON (`generations.summary`, `calibration_items.summary`)."""

    s: list[float | None]
    m: float
    l1: float
    lt: float
    temperature: float


def summary_row(
    s: Iterable[float], m: float, l1: float, lt: float, temperature: float
) -> SummaryRow:
    """The one serialiser of a summary: a -inf refusal logit (no such token) is stored as null,
    since JSON has no infinities."""
    return {
        "s": [None if v == -np.inf else float(v) for v in s],
        "m": float(m),
        "l1": float(l1),
        "lt": float(lt),
        "temperature": float(temperature),
    }


def _vector(value: ArrayLike, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Summaries:
    """First-token summaries of N prompts; columns of `s` follow `CATEGORIES`.

    s: (N, C) refusal-token logits, may be -inf. m: (N,) max non-refusal logit. l1: (N,)
    logsumexp of non-refusal logits. lt: (N,) logsumexp of non-refusal logits / temperature.
    temperature: (N,) the sampling temperature `lt` was taken at. m, l1, lt must be finite: a row
    whose every non-refusal token is -inf has no distribution to steer.
    """

    s: np.ndarray
    m: np.ndarray
    l1: np.ndarray
    lt: np.ndarray
    temperature: np.ndarray

    def __post_init__(self) -> None:
        s = np.asarray(self.s, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != N_CATEGORIES:
            raise ValueError(f"s must have shape (N, {N_CATEGORIES}), got {s.shape}")
        if np.isnan(s).any() or np.isposinf(s).any():
            raise ValueError("s must not contain nan or +inf")
        n = s.shape[0]
        object.__setattr__(self, "s", s)
        for name in ("m", "l1", "lt", "temperature"):
            arr = _vector(getattr(self, name), n, name)
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} must be finite")
            object.__setattr__(self, name, arr)
        if (self.temperature <= 0).any():
            raise ValueError("temperature must be > 0")

    def __len__(self) -> int:
        return int(self.s.shape[0])

    def take(self, indices: ArrayLike) -> Summaries:
        """The rows at `indices` (integer indices or a boolean mask), as new summaries."""
        idx = np.asarray(indices)
        if idx.dtype != np.bool_:
            idx = idx.astype(np.intp).reshape(-1)
        return Summaries(
            s=self.s[idx],
            m=self.m[idx],
            l1=self.l1[idx],
            lt=self.lt[idx],
            temperature=self.temperature[idx],
        )

    @staticmethod
    def concat(parts: Sequence[Summaries]) -> Summaries:
        """Stack summaries row-wise (e.g. the batches of a calibration run); [] gives 0 rows."""
        if not parts:
            return Summaries.empty()
        return Summaries(
            s=np.concatenate([p.s for p in parts], axis=0),
            m=np.concatenate([p.m for p in parts]),
            l1=np.concatenate([p.l1 for p in parts]),
            lt=np.concatenate([p.lt for p in parts]),
            temperature=np.concatenate([p.temperature for p in parts]),
        )

    @staticmethod
    def empty() -> Summaries:
        zero = np.zeros(0)
        return Summaries(np.zeros((0, N_CATEGORIES)), zero, zero, zero, zero)

    def to_rows(self) -> list[SummaryRow]:
        """JSON-ready rows, one per prompt (`summary_row`)."""
        return [
            summary_row(self.s[i], self.m[i], self.l1[i], self.lt[i], self.temperature[i])
            for i in range(len(self))
        ]

    @staticmethod
    def from_rows(rows: Sequence[Mapping[str, Any]]) -> Summaries:
        """Inverse of `to_rows`."""
        if not rows:
            return Summaries.empty()
        s = [[-np.inf if v is None else float(v) for v in row["s"]] for row in rows]
        return Summaries(
            s=np.array(s, dtype=np.float64),
            m=np.array([row["m"] for row in rows], dtype=np.float64),
            l1=np.array([row["l1"] for row in rows], dtype=np.float64),
            lt=np.array([row["lt"] for row in rows], dtype=np.float64),
            temperature=np.array([row["temperature"] for row in rows], dtype=np.float64),
        )


def summarise_logits(
    logits: np.ndarray,
    refusal_ids: Sequence[int],
    temperature: float | np.ndarray = 1.0,
) -> Summaries:
    """Reference summaries from full first-step logits (N, V).

    `refusal_ids` are the C category token ids in `CATEGORIES` order; every other token (including
    `[respond]`) is a non-refusal token. `temperature` is a scalar or one value per row.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (N, V), got {z.shape}")
    n, vocab = z.shape
    ids = np.asarray(refusal_ids, dtype=np.intp)
    if ids.shape != (N_CATEGORIES,):
        raise ValueError(f"need {N_CATEGORIES} refusal ids, got {ids.shape}")
    if len(set(ids.tolist())) != N_CATEGORIES or (ids < 0).any() or (ids >= vocab).any():
        raise ValueError(f"refusal ids must be distinct and inside the vocabulary: {ids.tolist()}")
    if np.isnan(z).any() or np.isposinf(z).any():
        raise ValueError("logits must not contain nan or +inf")
    temps = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (n,)).copy()
    if not (np.isfinite(temps) & (temps > 0)).all():
        raise ValueError("temperature must be finite and > 0")
    keep = np.ones(vocab, dtype=bool)
    keep[ids] = False
    other = z[:, keep]  # (N, V - C)
    if other.shape[1] == 0:
        raise ValueError("the vocabulary has no non-refusal token")
    return Summaries(
        s=z[:, ids],
        m=other.max(axis=1),
        l1=logsumexp(other, axis=1),
        lt=logsumexp(other / temps[:, None], axis=1),
        temperature=temps,
    )
