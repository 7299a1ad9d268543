"""A calibration problem, checked: summaries, decision rule, target kind and labels.

`Problem` knows which prompts make up each category's rate (all of them for traffic targets,
those labelled with the category for labelled ones) and computes the category's breakpoint keys
(core/breakpoints.py) over them. Every bad input raises `InvalidTarget` naming its field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core import breakpoints as bp
from core.categories import CATEGORIES, CLASSES
from core.decision import refusal_probabilities
from core.summary import N_CATEGORIES, Summaries

Method = Literal["threshold", "greedy_bias", "sampled_bias"]
TargetKind = Literal["traffic", "labelled"]
METHODS: tuple[Method, ...] = ("threshold", "greedy_bias", "sampled_bias")
TARGET_KINDS: tuple[TargetKind, ...] = ("traffic", "labelled")


class InvalidTarget(ValueError):
    """Targets, labels or values that cannot be solved; `field` is the offending dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def method_of(value: str) -> Method:
    """A method name (e.g. a stored run's) as the `Method` it is; `InvalidTarget` otherwise."""
    for known in METHODS:
        if value == known:
            return known
    raise InvalidTarget("method", f"unknown method {value!r}; known: {list(METHODS)}")


def target_kind_of(value: str) -> TargetKind:
    """A target kind name as the `TargetKind` it is; `InvalidTarget` otherwise."""
    for known in TARGET_KINDS:
        if value == known:
            return known
    raise InvalidTarget("target_kind", f"must be one of {list(TARGET_KINDS)}")


@dataclass(frozen=True, eq=False)
class Problem:
    """Validated inputs of a solve or a rate evaluation."""

    summ: Summaries
    method: str
    kind: str
    positives: np.ndarray | None  # (N, C) bool: labelled c; None without labels
    negatives: np.ndarray | None  # (N, C) bool: labelled, but not c
    s_t: np.ndarray  # (C, N) refusal logits by category (contiguous rows: fast per-category work)
    probs_t: np.ndarray | None  # (C, N) refusal probabilities, threshold method only

    @staticmethod
    def build(
        summ: Summaries, method: str, target_kind: str, labels: Sequence[str | None] | None
    ) -> Problem:
        if method not in METHODS:
            raise InvalidTarget("method", f"unknown method {method!r}; known: {list(METHODS)}")
        if target_kind not in TARGET_KINDS:
            raise InvalidTarget("target_kind", f"must be one of {list(TARGET_KINDS)}")
        if len(summ) == 0:
            raise InvalidTarget("prompts", "no prompts to calibrate on")
        if target_kind == "labelled" and labels is None:
            raise InvalidTarget("labels", "labelled targets need one label per prompt")
        pos, neg = (None, None) if labels is None else _label_masks(labels, len(summ))
        s_t = np.ascontiguousarray(summ.s.T)
        probs = None
        if method == "threshold":
            probs = np.ascontiguousarray(refusal_probabilities(summ).T)
        return Problem(summ, method, target_kind, pos, neg, s_t, probs)

    def rows(self, c: int) -> np.ndarray | slice:
        """The prompts whose decisions make up category c's rate."""
        if self.kind == "traffic" or self.positives is None:
            return slice(None)
        return self.positives[:, c]

    def size(self, c: int) -> int:
        """How many prompts make up category c's rate (one prompt is 1/size of it)."""
        if self.kind == "traffic" or self.positives is None:
            return len(self.summ)
        return int(self.positives[:, c].sum())

    def weights(self) -> np.ndarray:
        """(N, C): each category's rate is the weighted sum of its decisions over prompts."""
        if self.kind == "traffic" or self.positives is None:
            return np.full((len(self.summ), N_CATEGORIES), 1.0 / len(self.summ))
        shares: np.ndarray = self.positives / np.maximum(self.positives.sum(axis=0), 1)
        return shares

    def targets(self, targets: Mapping[str, float]) -> dict[int, float]:
        """Targets by category index, in `CATEGORIES` order."""
        out: dict[int, float] = {}
        for name, t in targets.items():
            field = f"targets.{name}"
            if name not in CATEGORIES:
                raise InvalidTarget(field, f"unknown category; known: {list(CATEGORIES)}")
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 <= t <= 1.0:
                raise InvalidTarget(field, f"target must be a number in [0, 1], got {t!r}")
            c = CATEGORIES.index(name)
            if self.size(c) == 0:
                raise InvalidTarget(field, f"no prompt is labelled {name!r}")
            out[c] = float(t)
        return dict(sorted(out.items()))

    def rivals(self, values: np.ndarray, c: int) -> Any:
        """What category c competes against on every prompt, the other values fixed.

        threshold: the keys (N,); greedy: the best biased logits before and after c; sampled:
        None. Computed once per step and shared by `keys` and `decided_as`.
        """
        if self.method == "threshold":
            assert self.probs_t is not None
            return bp.threshold_keys(self.probs_t, self.s_t, values, c)
        if self.method == "greedy_bias":
            return bp.greedy_rivals(self.s_t, values, c)
        return None

    def keys(self, values: np.ndarray, c: int, rivals: Any = None) -> np.ndarray:
        """Breakpoint keys of category c over the prompts of its rate, the other values fixed."""
        summ, rows = self.summ, self.rows(c)
        if self.method == "sampled_bias":
            temp = summ.temperature[rows]
            return bp.sampled_keys(summ.s[rows], summ.lt[rows], temp, values, c)
        rivals = self.rivals(values, c) if rivals is None else rivals
        if self.method == "threshold":
            keys: np.ndarray = rivals[rows]
            return keys
        before, after = rivals
        return bp.greedy_keys(self.s_t[c][rows], summ.m[rows], (before[rows], after[rows]))

    def decided_as(self, value: float, c: int, rivals: Any) -> np.ndarray:
        """(N,) bool: prompts decided c when c's value is `value`, exactly as the discrete
        decision rules decide them (`rivals` from the same other values)."""
        if self.method == "threshold":
            decided: np.ndarray = rivals <= -value
            return decided
        return bp.greedy_wins(self.s_t[c], self.summ.m, rivals, value)


def check_values(values: Any, method: str, field: str) -> np.ndarray:
    """(C,) float64 copy: thresholds in [0, 1] or +inf; biases below +inf (-inf is "off")."""
    v = np.array(values, dtype=np.float64)
    if v.shape != (N_CATEGORIES,) or np.isnan(v).any():
        raise InvalidTarget(field, f"need {N_CATEGORIES} numbers in CATEGORIES order")
    ok = ((v >= 0) & (v <= 1)) | np.isposinf(v) if method == "threshold" else v < np.inf
    if not ok.all():
        kind = "thresholds in [0, 1] or +inf" if method == "threshold" else "biases < +inf"
        raise InvalidTarget(field, f"values must be {kind}")
    return v


def _label_masks(labels: Sequence[str | None], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) positives and negatives from per-prompt labels; raise on a bad length or label."""
    if len(labels) != n:
        raise InvalidTarget("labels", f"got {len(labels)} labels for {n} prompts")
    arr = np.asarray(labels, dtype=object).reshape(n)
    known = np.stack([arr == name for name in CLASSES], axis=1)  # (N, C+1)
    labelled = np.array([label is not None for label in arr], dtype=bool)
    bad = ~known.any(axis=1) & labelled
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidTarget(f"labels[{i}]", f"unknown label {arr[i]!r}; known: {list(CLASSES)}")
    positives = known[:, :N_CATEGORIES]
    any_known: np.ndarray = np.any(known, axis=1)
    return positives, any_known[:, None] & ~positives
