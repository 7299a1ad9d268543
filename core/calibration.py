"""Calibration (DESIGN 4.3, 5): thresholds or biases that meet per-category target refusal rates.

Everything is solved from stored first-token summaries, without the model. With the other
categories' values fixed, the prompts a category can still win and the value at which each of
them flips to it (its *breakpoint*) are known, so a target is met by a quantile over breakpoints
(threshold, greedy bias) or a bracketed Newton/bisection on a continuous rate (sampled bias).
Categories compete, so `solve` makes coordinate-wise passes until a pass changes nothing (for
sampled biases each pass is followed by a joint Newton step, which speeds up coupled categories).

Value conventions: a threshold is the smallest refused p_c (a prompt with p_c >= tau_c is
eligible); +inf (JSON "inf", serve as disabled) only when the target refuses none and some
candidate prompt has p_c == 1.0, else "refuse none" is 1.0. A greedy bias sits midway between the
last included and the first excluded breakpoint (last included + 1 above the top one). A bias of
-inf (JSON "off") refuses none. Where two achievable counts are equally near a target, the lower
one wins. `labels` entries are a category, "respond" or None (unknown: neither positive nor
negative for TPR/FPR).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from core import breakpoints as bp
from core.calibration_problem import InvalidTarget, Method, Problem, TargetKind, check_values
from core.categories import CATEGORIES
from core.decision import greedy_bias_decision, sampled_bias_probabilities, threshold_decision
from core.policy import CategoryRule
from core.summary import N_CATEGORIES, Summaries

__all__ = [
    "CategoryResult",
    "InvalidTarget",
    "Method",
    "Solution",
    "TargetKind",
    "control_error",
    "rates",
    "solve",
]

#: Values of untargeted categories when `initial` is not given: a default rule's.
DEFAULT_VALUE = {
    "threshold": CategoryRule().threshold,
    "greedy_bias": float(CategoryRule().bias),
    "sampled_bias": float(CategoryRule().bias),
}
#: How far a sampled-bias rate may sit from its target and still count as met.
SAMPLED_TOLERANCE = 1e-6
#: Halvings of a joint Newton step that does not lower the worst error (a backtracking search).
NEWTON_HALVINGS = 6
CURVE_POINTS = 50


def _json_number(x: float) -> float | str:
    """A finite float, or "off" for -inf (bias) and "inf" for +inf (threshold)."""
    return float(x) if math.isfinite(x) else ("off" if x < 0 else "inf")


@dataclass(frozen=True)
class CategoryResult:
    """The solved value of one targeted category and how well it meets its target on the set."""

    category: str
    value: float
    rate: float
    target: float
    feasible: bool
    reason: str | None
    curve: list[tuple[float, float]]
    tpr: float | None = None
    fpr: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "value": _json_number(self.value),
            "rate": self.rate,
            "target": self.target,
            "feasible": self.feasible,
            "reason": self.reason,
            "curve": [[v, r] for v, r in self.curve],
            "tpr": self.tpr,
            "fpr": self.fpr,
        }


@dataclass(frozen=True, eq=False)
class Solution:
    """Per-category values in `CATEGORIES` order; `categories` holds the targeted ones only."""

    method: Method
    target_kind: TargetKind
    values: np.ndarray
    categories: dict[str, CategoryResult]
    rounds: int
    converged: bool

    def to_json(self) -> dict[str, Any]:
        values = zip(CATEGORIES, self.values, strict=True)
        return {
            "method": self.method,
            "target_kind": self.target_kind,
            "rounds": self.rounds,
            "converged": self.converged,
            "values": {c: _json_number(float(v)) for c, v in values},
            "categories": {c: r.to_json() for c, r in self.categories.items()},
        }


def solve(
    summaries: Summaries,
    targets: Mapping[str, float],
    *,
    method: Method,
    target_kind: TargetKind = "traffic",
    labels: Sequence[str | None] | None = None,
    initial: np.ndarray | None = None,
    max_rounds: int = 50,
) -> Solution:
    """Values meeting `targets` (category -> rate in [0, 1]) on the prompts, per category.

    Coordinate-wise passes over the targeted categories (in `CATEGORIES` order), at most
    `max_rounds`, until a pass changes no decision and every category has its nearest achievable
    count given the others (discrete rules), or moves no bias by more than 1e-9 or meets every
    target within `SAMPLED_TOLERANCE` (sampled).
    Untargeted categories keep their `initial` value (the `CategoryRule` default when not
    given). Targets that cannot be met are reported per category, never raised.
    """
    problem = Problem.build(summaries, method, target_kind, labels)
    goals = problem.targets(targets)
    if max_rounds < 1:
        raise ValueError("max_rounds must be >= 1")
    if initial is None:
        values = np.full(N_CATEGORIES, DEFAULT_VALUE[method])
    else:
        values = check_values(initial, method, "initial")
    rounds, converged = 0, not goals
    while goals and rounds < max_rounds:
        rounds += 1
        moved = False
        for c, target in goals.items():
            rivals, old = problem.rivals(values, c), float(values[c])
            values[c] = _solve_one(problem, values, c, target, rivals)
            moved |= _moved(problem, old, float(values[c]), c, rivals)
        if (not moved and _settled(problem, values, goals)) or _all_met(problem, values, goals):
            converged = True
            break
        if method == "sampled_bias":
            _joint_newton(problem, values, goals)
    measured = _rates(problem, values)
    results = {
        CATEGORIES[c]: _result(problem, values, c, target, measured[CATEGORIES[c]], rounds)
        for c, target in goals.items()
    }
    return Solution(method, target_kind, values, results, rounds, converged)


def _solve_one(problem: Problem, values: np.ndarray, c: int, target: float, rivals: Any) -> float:
    """The value of category c that brings its rate nearest `target`, the others held fixed."""
    keys = problem.keys(values, c, rivals)
    if problem.method == "sampled_bias":
        temp = problem.summ.temperature[problem.rows(c)]
        return bp.solve_sampled(keys, temp, target * problem.size(c), float(values[c]))
    count, included, excluded = bp.nearest_count(keys, _goal(problem, c, target))
    if problem.method == "threshold":
        if count:
            return -included
        return 1.0 if excluded > -1.0 else np.inf  # 1.0 unless a candidate has p_c == 1.0
    if count == 0:
        return -np.inf
    return included + 1.0 if excluded == np.inf else included + 0.5 * (excluded - included)


def _goal(problem: Problem, c: int, target: float) -> float:
    """The target as a count of prompts, rounded so that 0.3 * 10 ties like 3 does."""
    return round(target * problem.size(c), 9)


def _moved(problem: Problem, old: float, new: float, c: int, rivals: Any) -> bool:
    """Whether moving category c from `old` to `new` changed anything that counts.

    Discrete rules: any decision (only prompts entering or leaving c can change). Sampled: the
    bias itself, beyond 1e-9 relative.
    """
    if problem.method != "sampled_bias":
        before, after = problem.decided_as(old, c, rivals), problem.decided_as(new, c, rivals)
        return not np.array_equal(before, after)
    if not (math.isfinite(old) and math.isfinite(new)):
        return old != new
    return abs(new - old) > 1e-9 * max(1.0, abs(new))


def _all_met(problem: Problem, values: np.ndarray, goals: dict[int, float]) -> bool:
    """Sampled: every targeted rate within `SAMPLED_TOLERANCE`. The biases can go on moving
    along a direction that leaves the rates alone (one prompt whose respond mass is nil: a
    common shift of its categories' biases), so values alone need not settle."""
    if problem.method != "sampled_bias":
        return False
    measured = _rates(problem, values)
    return all(
        abs(cast(float, measured[CATEGORIES[c]]["rate"]) - target) <= SAMPLED_TOLERANCE
        for c, target in goals.items()
    )


def _settled(problem: Problem, values: np.ndarray, goals: dict[int, float]) -> bool:
    """Discrete rules: every targeted category already has its nearest count given the others.

    A pass can leave every decision alone and still shift a greedy bias within its gap (the gap
    moves with the other biases), so values alone need not settle.
    """
    if problem.method == "sampled_bias":
        return True
    for c, target in goals.items():
        rivals = problem.rivals(values, c)
        best = bp.nearest_count(problem.keys(values, c, rivals), _goal(problem, c, target))[0]
        decided = problem.decided_as(float(values[c]), c, rivals)[problem.rows(c)]
        if best != int(decided.sum()):
            return False
    return True


def _joint_newton(problem: Problem, values: np.ndarray, goals: dict[int, float]) -> None:
    """One Newton step on all targeted sampled biases at once, kept only if it lowers the error.

    Categories at "off" or saturated (no slope left) are left to the coordinate passes. A step
    that overshoots (far along a nearly flat direction, where the first order misleads) is
    halved up to `NEWTON_HALVINGS` times before it is given up.
    """
    weights = problem.weights()  # (N, C)
    cats = np.array(list(goals))
    targets = np.array(list(goals.values()))

    def errors(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = sampled_bias_probabilities(problem.summ, v)  # (N, C+1)
        return (weights * probs[:, :N_CATEGORIES]).sum(axis=0)[cats] - targets, probs

    err, probs = errors(values)
    step = bp.joint_newton_step(probs, weights, problem.summ.temperature, cats, err, values)
    if not step.any():
        return
    worst = np.abs(err).max()
    for _ in range(NEWTON_HALVINGS + 1):
        trial = values + step
        if np.abs(errors(trial)[0]).max() < worst:
            values[:] = trial
            return
        step = step / 2


def _curve(problem: Problem, values: np.ndarray, c: int) -> list[tuple[float, float]]:
    """(value, rate) points of category c for charts, the other values held fixed."""
    temp = problem.summ.temperature[problem.rows(c)]
    return bp.curve(problem.method, problem.keys(values, c), temp, problem.size(c), CURVE_POINTS)


def rates(
    summaries: Summaries,
    values: np.ndarray,
    *,
    method: Method,
    target_kind: TargetKind = "traffic",
    labels: Sequence[str | None] | None = None,
) -> dict[str, dict[str, float | None]]:
    """Per category {"rate", "tpr", "fpr"} of `values` on the prompts; sampled rates are expected.

    rate is the share of all prompts decided c (traffic) or of prompts labelled c (labelled;
    None when none is). tpr/fpr are reported whenever labels are given (fpr over prompts labelled
    otherwise; None when there are none).
    """
    problem = Problem.build(summaries, method, target_kind, labels)
    return _rates(problem, check_values(values, method, "values"))


def _decided(problem: Problem, values: np.ndarray) -> np.ndarray:
    """(N, C) float: 1 where a prompt is decided c (or the probability of c, sampled)."""
    if problem.method == "sampled_bias":
        return sampled_bias_probabilities(problem.summ, values)[:, :N_CATEGORIES]
    rule = threshold_decision if problem.method == "threshold" else greedy_bias_decision
    decisions = rule(problem.summ, values)
    one_hot: np.ndarray = (decisions[:, None] == np.arange(N_CATEGORIES)).astype(np.float64)
    return one_hot


def _share(decided: np.ndarray, mask: np.ndarray) -> list[float | None]:
    counts = mask.sum(axis=0)
    hits = (decided * mask).sum(axis=0)
    return [float(h) / k if k else None for h, k in zip(hits, counts, strict=True)]


def _rates(problem: Problem, values: np.ndarray) -> dict[str, dict[str, float | None]]:
    decided = _decided(problem, values)
    none: list[float | None] = [None] * N_CATEGORIES
    tpr, fpr = none, none
    if problem.positives is not None and problem.negatives is not None:
        tpr, fpr = _share(decided, problem.positives), _share(decided, problem.negatives)
    rate = [float(x) for x in decided.mean(axis=0)] if problem.kind == "traffic" else tpr
    return {
        name: {"rate": rate[i], "tpr": tpr[i], "fpr": fpr[i]} for i, name in enumerate(CATEGORIES)
    }


def _tolerance(problem: Problem, c: int) -> float:
    """How near a target counts as met: one prompt (discrete rules) or `SAMPLED_TOLERANCE`."""
    if problem.method == "sampled_bias":
        return SAMPLED_TOLERANCE
    return 1.0 / problem.size(c) + 1e-12


def _result(
    problem: Problem,
    values: np.ndarray,
    c: int,
    target: float,
    measured: dict[str, float | None],
    rounds: int,
) -> CategoryResult:
    rate = measured["rate"]
    assert rate is not None  # every targeted category has prompts to count
    feasible = bool(abs(rate - target) <= _tolerance(problem, c))
    return CategoryResult(
        category=CATEGORIES[c],
        value=float(values[c]),
        rate=rate,
        target=target,
        feasible=feasible,
        reason=None if feasible else _reason(problem, values, c, target, rate, rounds),
        curve=_curve(problem, values, c),
        tpr=measured["tpr"],
        fpr=measured["fpr"],
    )


def _reason(
    problem: Problem, values: np.ndarray, c: int, target: float, rate: float, rounds: int
) -> str:
    """Why category c misses its target: out of reach, ties in the data, or competition."""
    keys = problem.keys(values, c)
    n_eff, tol = problem.size(c), _tolerance(problem, c)
    reach = float(np.isfinite(keys).sum()) / n_eff
    noun = "threshold" if problem.method == "threshold" else "bias"
    population = "prompts" if problem.kind == "traffic" else f"prompts labelled {CATEGORIES[c]}"
    if target > reach + tol:
        return f"no {noun} reaches {target:.4g}: at most {reach:.4g} of {population}"
    if problem.method != "sampled_bias":
        nearest = bp.nearest_count(keys, _goal(problem, c, target))[0] / n_eff
        if abs(nearest - target) > tol:
            return (
                f"ties in the scores: the nearest achievable rate is {nearest:.4g} of {population}"
            )
    return f"categories compete: {rate:.4g} of {population} after {rounds} rounds, not converged"


def control_error(
    solution: Solution, holdout: Summaries, *, labels: Sequence[str | None] | None = None
) -> dict[str, dict[str, float]]:
    """Per targeted category {"target", "achieved", "error"}: |achieved - target| on held-out prompts.

    Labelled solutions need `labels` for the held-out prompts, and a held-out prompt of every
    targeted category (`InvalidTarget` otherwise).
    """
    problem = Problem.build(holdout, solution.method, solution.target_kind, labels)
    measured = _rates(problem, solution.values)
    out: dict[str, dict[str, float]] = {}
    for name, result in solution.categories.items():
        achieved = measured[name]["rate"]
        if achieved is None:
            raise InvalidTarget(f"targets.{name}", f"no held-out prompt is labelled {name!r}")
        error = abs(achieved - result.target)
        out[name] = {"target": result.target, "achieved": achieved, "error": error}
    return out
