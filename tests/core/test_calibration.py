"""Calibration solvers meet targets as exactly as the prompts allow, and say when they cannot.

Summaries here are drawn on a grid of quarter-logits so that ties between prompts are common and
breakpoints are exact in float64; brute-force references use only `core.decision`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.calibration import InvalidTarget, control_error, rates, solve
from core.categories import CATEGORIES, CLASSES
from core.decision import greedy_bias_decision, refusal_probabilities, threshold_decision
from core.summary import Summaries
from tests.core.strategies import C

#: Fewer examples than `PROPERTY` (each solve is a few passes); RCS_HYPOTHESIS_EXAMPLES raises it.
FAST = settings(max_examples=int(os.environ.get("RCS_HYPOTHESIS_EXAMPLES", "60")), deadline=None)
grid = st.integers(-24, 24).map(lambda k: k / 4)
refusal_logit = st.one_of(grid, grid, grid, st.just(-np.inf))
thresholds = st.one_of(st.integers(0, 20).map(lambda k: k / 20), st.just(np.inf))
biases = st.one_of(grid, st.just(-np.inf))


@st.composite
def summaries(draw: st.DrawFn, min_size: int = 1, max_size: int = 30) -> Summaries:
    """Summaries on the quarter-logit grid; rows repeat often, so many prompts tie."""
    n = draw(st.integers(min_size, max_size))
    pool = draw(st.lists(st.lists(refusal_logit, min_size=C, max_size=C), min_size=1, max_size=6))
    s = np.array([draw(st.sampled_from(pool)) for _ in range(n)])
    m = np.array(draw(st.lists(grid, min_size=n, max_size=n)))
    gap = np.array(draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))) / 4
    temp = np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=n, max_size=n)))
    return Summaries(s=s, m=m, l1=m + gap, lt=(m + gap) / temp, temperature=temp)


def onehot_rate(decisions: np.ndarray, c: int) -> float:
    return float((decisions == c).mean())


def brute_force_rates(summ: Summaries, values: np.ndarray, c: int, method: str) -> np.ndarray:
    """Rate of c at every value of c that could matter, the others fixed, by the rules alone."""
    if method == "threshold":
        candidates = np.concatenate([refusal_probabilities(summ)[:, c], [0.0, 1.0, np.inf]])
        rule = threshold_decision
    else:
        biased = summ.s + np.where(np.arange(C) == c, 0.0, values)
        with np.errstate(invalid="ignore"):  # -inf - -inf where c cannot win: dropped below
            edges = np.concatenate([summ.m[:, None], biased], axis=1) - summ.s[:, c][:, None]
        edges = edges[np.isfinite(edges)]
        candidates = np.concatenate([edges - 1e-3, edges + 1e-3, [-np.inf, 1e3]])
        rule = greedy_bias_decision
    out = []
    for v in np.unique(candidates):
        trial = values.copy()
        trial[c] = v
        out.append(onehot_rate(rule(summ, trial), c))
    return np.array(out)


def test_sampled_bias_converges_when_the_biases_drift_along_a_flat_direction() -> None:
    """Found by the property above (a CI run, session 22): one prompt with no respond mass, so a
    common shift of its categories' biases leaves every rate alone and the biases never stop
    moving; the targets are met all the same, and that is convergence. The joint Newton step
    overshoots along the nearly flat direction; halving it meets the targets in a few rounds
    (49 before it did)."""
    summ = Summaries(
        s=np.array([[0.0, 2.5, -np.inf, 5.0, -np.inf]]),
        m=np.array([0.0]),
        l1=np.array([0.0]),
        lt=np.array([0.0]),
        temperature=np.array([0.5]),
    )
    cats = ["incomplete", "unsupported", "indeterminate", "humanizing"]
    reached = rates(summ, np.array([0.0, 0.0, 0.0, -0.5, 0.0]), method="sampled_bias")
    targets = {c: reached[c]["rate"] for c in cats}
    sol = solve(summ, targets, method="sampled_bias", initial=np.zeros(C))
    assert sol.converged and sol.rounds <= 5
    achieved = rates(summ, sol.values, method="sampled_bias")
    assert all(abs(achieved[c]["rate"] - targets[c]) <= 1e-6 for c in cats)


@FAST
@given(
    summ=summaries(),
    method=st.sampled_from(["threshold", "greedy_bias"]),
    cat=st.integers(0, C - 1),
    target=st.floats(0.0, 1.0),
    data=st.data(),
)
def test_one_category_matches_brute_force_over_breakpoints_lower_rate_on_equal_distance(
    summ: Summaries, method: str, cat: int, target: float, data: st.DataObject
) -> None:
    values = np.array(
        data.draw(st.lists(thresholds if method == "threshold" else biases, min_size=C, max_size=C))
    )
    sol = solve(summ, {CATEGORIES[cat]: target}, method=method, initial=values)  # type: ignore[arg-type]
    result = sol.categories[CATEGORIES[cat]]
    reachable = brute_force_rates(summ, values, cat, method)
    distance = np.abs(reachable - target)
    best = reachable[distance <= distance.min() + 1e-9].min()
    assert result.rate == pytest.approx(best, abs=1e-12)
    assert sol.converged and sol.rounds <= 2
    np.testing.assert_array_equal(np.delete(sol.values, cat), np.delete(values, cat))
    rule = threshold_decision if method == "threshold" else greedy_bias_decision
    assert onehot_rate(rule(summ, sol.values), cat) == result.rate
    assert result.feasible == (abs(best - target) <= 1 / len(summ) + 1e-12)


@FAST
@given(summ=summaries(), method=st.sampled_from(["threshold", "greedy_bias"]), data=st.data())
def test_jointly_reachable_targets_are_met_within_one_prompt_despite_ties(
    summ: Summaries, method: str, data: st.DataObject
) -> None:
    values = np.array(
        data.draw(st.lists(thresholds if method == "threshold" else biases, min_size=C, max_size=C))
    )
    cats = data.draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=C, unique=True))
    reached = rates(summ, values, method=method)  # type: ignore[arg-type]
    targets = {c: reached[c]["rate"] for c in cats}
    start = values.copy()  # untargeted categories as they were; targeted ones from the default
    start[[CATEGORIES.index(c) for c in cats]] = 0.5 if method == "threshold" else 0.0
    sol = solve(summ, targets, method=method, initial=start)  # type: ignore[arg-type]
    assert sol.converged, sol.to_json()
    for c, result in sol.categories.items():
        assert result.feasible, result.reason
        assert abs(result.rate - targets[c]) <= 1 / len(summ) + 1e-12


@FAST
@given(summ=summaries(), data=st.data())
def test_sampled_bias_meets_reachable_targets_within_1e_6(
    summ: Summaries, data: st.DataObject
) -> None:
    values = np.array(data.draw(st.lists(biases, min_size=C, max_size=C)))
    cats = data.draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=C, unique=True))
    reached = rates(summ, values, method="sampled_bias")
    targets = {c: reached[c]["rate"] for c in cats}
    start = values.copy()
    start[[CATEGORIES.index(c) for c in cats]] = 0.0
    sol = solve(summ, targets, method="sampled_bias", initial=start)
    assert sol.converged
    achieved = rates(summ, sol.values, method="sampled_bias")
    for c in cats:
        assert sol.categories[c].feasible, sol.categories[c].reason
        assert abs(achieved[c]["rate"] - targets[c]) <= 1e-6


@FAST
@given(
    summ=summaries(),
    method=st.sampled_from(["threshold", "greedy_bias", "sampled_bias"]),
    cat=st.integers(0, C - 1),
    data=st.data(),
)
def test_rates_are_monotone_in_each_parameter(
    summ: Summaries, method: str, cat: int, data: st.DataObject
) -> None:
    values = np.array(
        data.draw(st.lists(thresholds if method == "threshold" else biases, min_size=C, max_size=C))
    )
    other = values.copy()
    other[cat] = data.draw(thresholds if method == "threshold" else biases)
    low, high = (values, other) if other[cat] >= values[cat] else (other, values)
    before = rates(summ, low, method=method)  # type: ignore[arg-type]
    after = rates(summ, high, method=method)  # type: ignore[arg-type]
    sign = -1.0 if method == "threshold" else 1.0  # raising a threshold refuses less
    for i, name in enumerate(CATEGORIES):
        change = after[name]["rate"] - before[name]["rate"]  # type: ignore[operator]
        assert change * sign >= -1e-12 if i == cat else change * sign <= 1e-12


@FAST
@given(
    summ=summaries(min_size=2), method=st.sampled_from(["threshold", "greedy_bias"]), data=st.data()
)
def test_labelled_targets_count_prompts_of_that_label(
    summ: Summaries, method: str, data: st.DataObject
) -> None:
    labels = data.draw(
        st.lists(st.sampled_from([*CLASSES, None]), min_size=len(summ), max_size=len(summ))
    )
    present = sorted({lab for lab in labels if lab in CATEGORIES})
    if not present:
        return
    cat = data.draw(st.sampled_from(present))
    target = data.draw(st.floats(0.0, 1.0))
    sol = solve(summ, {cat: target}, method=method, target_kind="labelled", labels=labels)  # type: ignore[arg-type]
    result = sol.categories[cat]
    rule = threshold_decision if method == "threshold" else greedy_bias_decision
    decided = rule(summ, sol.values) == CATEGORIES.index(cat)
    lab = np.array(labels, dtype=object)
    positive = lab == cat
    negative = (lab != cat) & ~np.equal(lab, None)
    assert result.rate == result.tpr == pytest.approx(decided[positive].mean())
    assert result.fpr == (pytest.approx(decided[negative].mean()) if negative.any() else None)
    if result.feasible:
        assert abs(result.rate - target) <= 1 / positive.sum() + 1e-12


def tied(n: int, p_logit: float = 0.0) -> Summaries:
    """n identical prompts."""
    s = np.full((n, C), -np.inf)
    s[:, CATEGORIES.index("safety")] = p_logit
    zero = np.zeros(n)
    return Summaries(s=s, m=zero, l1=zero, lt=zero, temperature=np.ones(n))


@pytest.mark.parametrize("method", ["threshold", "greedy_bias"])
def test_ties_make_a_target_infeasible_and_the_lower_of_two_equal_rates_wins(method: str) -> None:
    sol = solve(tied(10), {"safety": 0.5}, method=method)  # type: ignore[arg-type]
    result = sol.categories["safety"]
    assert not result.feasible and result.rate == 0.0
    assert result.reason == "ties in the scores: the nearest achievable rate is 0 of prompts"
    assert solve(tied(10), {"safety": 0.51}, method=method).categories["safety"].rate == 1.0  # type: ignore[arg-type]


def test_unreachable_targets_are_flagged_with_the_nearest_rate() -> None:
    blocked = tied(9, -np.inf)  # safety can never win these: incomplete is ahead and eligible
    blocked.s[:, CATEGORIES.index("incomplete")] = 5.0
    summ = Summaries.concat([tied(91), blocked])
    for method in ("threshold", "greedy_bias", "sampled_bias"):
        initial = np.array([0.0, 0.5, 0.5, 0.5, 0.5]) if method == "threshold" else None
        sol = solve(summ, {"safety": 0.95}, method=method, initial=initial)  # type: ignore[arg-type]
        result = sol.categories["safety"]
        noun = "threshold" if method == "threshold" else "bias"
        assert not result.feasible
        assert result.reason == f"no {noun} reaches 0.95: at most 0.91 of prompts"
        assert result.rate == pytest.approx(0.91)


def test_target_zero_refuses_none_and_serialises_non_finite_values() -> None:
    summ = Summaries.concat([tied(3), tied(2, 80.0)])  # p = 0.5, and p == 1.0 exactly
    assert refusal_probabilities(summ)[:, 4].max() == 1.0
    off = solve(summ, {"safety": 0.0}, method="greedy_bias")
    assert off.values[4] == -np.inf and off.to_json()["values"]["safety"] == "off"
    never = solve(summ, {"safety": 0.0}, method="threshold")
    assert never.values[4] == np.inf and never.to_json()["values"]["safety"] == "inf"
    assert never.categories["safety"].rate == 0.0
    assert solve(tied(3), {"safety": 0.0}, method="threshold").values[4] == 1.0
    json.dumps(never.to_json(), allow_nan=False)


def realistic(n: int, seed: int) -> tuple[Summaries, list[str]]:
    """Prompts of a known class: its refusal logit raised by 7 over the others."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, C + 1, n)
    s = rng.normal(-4.0, 2.0, (n, C))
    s[true < C, true[true < C]] += 7.0
    m = rng.normal(3.0, 1.5, n)
    l1 = m + np.log1p(np.exp(rng.normal(0.0, 1.0, n)))
    labels = [CLASSES[t] for t in true]
    return Summaries(s=s, m=m, l1=l1, lt=l1, temperature=np.ones(n)), labels


@pytest.mark.parametrize("method", ["threshold", "greedy_bias", "sampled_bias"])
def test_control_error_on_held_out_prompts_is_sampling_noise(method: str) -> None:
    calib, labels = realistic(20_000, 1)
    holdout, held_labels = realistic(20_000, 2)
    targets = {"safety": 0.9, "incomplete": 0.5, "humanizing": 0.2}
    sol = solve(calib, targets, method=method, target_kind="labelled", labels=labels)  # type: ignore[arg-type]
    assert sol.converged and all(r.feasible for r in sol.categories.values())
    errors = control_error(sol, holdout, labels=held_labels)
    assert set(errors) == set(targets)
    # ~3,300 prompts per label: 3 standard errors of a rate near 0.5 is about 0.026.
    assert all(e["error"] < 0.03 for e in errors.values()), errors
    same = control_error(sol, calib, labels=labels)
    assert all(e["error"] <= 1 / 3000 for e in same.values()), same


def test_solution_json_shape() -> None:
    calib, _ = realistic(500, 3)
    sol = solve(calib, {"safety": 0.1, "unsupported": 0.05}, method="threshold")
    data = json.loads(json.dumps(sol.to_json(), allow_nan=False))
    assert set(data) == {"method", "target_kind", "rounds", "converged", "values", "categories"}
    assert list(data["values"]) == list(CATEGORIES) and data["values"]["humanizing"] == 0.5
    safety = data["categories"]["safety"]
    assert set(safety) == {
        "category",
        "value",
        "rate",
        "target",
        "feasible",
        "reason",
        "curve",
        "tpr",
        "fpr",
    }
    assert 2 <= len(safety["curve"]) <= 50 and safety["tpr"] is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"targets": {"safety": 1.5}}, "targets.safety"),
        ({"targets": {"safety": -0.1}}, "targets.safety"),
        ({"targets": {"safety": float("nan")}}, "targets.safety"),
        ({"targets": {"violence": 0.5}}, "targets.violence"),
        ({"target_kind": "labelled"}, "labels"),
        ({"target_kind": "labelled", "labels": ["safety"] * 3}, "labels"),
        ({"target_kind": "labelled", "labels": ["respond"] * 4}, "targets.safety"),
        ({"labels": ["safety", "nonsense", None, "respond"]}, "labels[1]"),
        ({"initial": np.full(C, 2.0)}, "initial"),
    ],
)
def test_invalid_targets_name_the_field(kwargs: dict, field: str) -> None:
    args = {"targets": {"safety": 0.5}, "method": "threshold", **kwargs}
    with pytest.raises(InvalidTarget) as info:
        solve(tied(4), **args)
    assert info.value.field == field
