"""Each decision rule computed from summaries equals the same rule applied to full logits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core.decision import (
    greedy_bias_decision,
    refusal_probabilities,
    refusal_score,
    sampled_bias_probabilities,
    threshold_decision,
)
from core.summary import Summaries, summarise_logits
from tests.core import full_logits as full
from tests.core.strategies import (
    PROPERTY,
    C,
    LogitCase,
    bias_values,
    logit_cases,
    per_row,
    threshold_values,
)
from tests.core.tolerance import EPS, assert_probs_close, log_error_bound, partition_rounding


@PROPERTY
@given(case=logit_cases())
def test_probabilities_match_full_softmax(case: LogitCase) -> None:
    summ = summarise_logits(case.z, case.ids, case.temperature)
    expected = full.probabilities(case.z, case.ids)
    err = log_error_bound(partition_rounding(case.z, case.ids))
    assert_probs_close(refusal_probabilities(summ), expected, err)


@PROPERTY
@given(case=logit_cases(), data=st.data())
def test_threshold_decision_matches_full_softmax(case: LogitCase, data: st.DataObject) -> None:
    summ = summarise_logits(case.z, case.ids)
    p = full.probabilities(case.z, case.ids)
    n = len(summ)
    tau = np.array(np.broadcast_to(data.draw(per_row(threshold_values, n)), (n, C)))
    # Put some thresholds just above or below the prompt's own probability, to test sharpness.
    near = st.tuples(st.integers(0, n - 1), st.integers(0, C - 1), st.floats(1e-7, 1e-2))
    for row, cat, delta in data.draw(st.lists(near, max_size=4)):
        side = data.draw(st.sampled_from([-1.0, 1.0]))
        tau[row, cat] = min(1.0, p[row, cat] * (1.0 + side * delta))
    # p_c >= tau_c is genuinely ambiguous when tau_c sits within float rounding of p_c: the two
    # paths sum in different orders, and the summary keeps L_1 as one float64, which near 1e30
    # cannot hold log(2) (ulp 1.4e14), so there p_c in (0, 1) is only known to that precision.
    # Only those cases are skipped, judged in log space. Never ambiguous: tau_c = 0 (always met),
    # and tau_c = 1 with log-odds far above 40, where 1 - p_c is far below half an ulp of 1 and
    # both paths round p_c to exactly 1.0.
    log_p = full.log_probabilities(case.z, case.ids)
    err = 1e-9 + log_error_bound(partition_rounding(case.z, case.ids))
    with np.errstate(divide="ignore", invalid="ignore"):
        near_tau = np.abs(log_p - np.log(tau)) <= err
    certain_one = (tau == 1.0) & (full.log_odds(case.z, case.ids) > 40 + err)
    assume(not (near_tau & (tau > 0) & ~certain_one).any())
    expected = full.threshold_decision(case.z, case.ids, tau)
    np.testing.assert_array_equal(threshold_decision(summ, tau), expected)


@PROPERTY
@given(case=logit_cases(refusal_last=True), data=st.data())
def test_greedy_bias_decision_matches_full_argmax(case: LogitCase, data: st.DataObject) -> None:
    # Both paths add the same float bias to the same logit and compare exactly: no tolerance.
    biases = data.draw(per_row(bias_values, case.z.shape[0]))
    summ = summarise_logits(case.z, case.ids)
    expected = full.greedy_decision(case.z, case.ids, biases)
    np.testing.assert_array_equal(greedy_bias_decision(summ, biases), expected)


@PROPERTY
@given(case=logit_cases(), data=st.data())
def test_sampled_bias_probabilities_match_full_softmax(
    case: LogitCase, data: st.DataObject
) -> None:
    biases = data.draw(per_row(bias_values, case.z.shape[0]))
    summ = summarise_logits(case.z, case.ids, case.temperature)
    got = sampled_bias_probabilities(summ, biases)
    expected = full.sampled_probabilities(case.z, case.ids, biases, case.temperature)
    err = log_error_bound(partition_rounding(case.z, case.ids, case.temperature))
    assert_probs_close(got, expected, err)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@PROPERTY
@given(case=logit_cases())
def test_refusal_score_is_full_log_odds(case: LogitCase) -> None:
    summ = summarise_logits(case.z, case.ids)
    got = refusal_score(summ)
    expected = full.log_odds(case.z, case.ids)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    finite = np.isfinite(expected)
    assert np.isfinite(got[finite]).all()
    tol = np.broadcast_to(log_error_bound(partition_rounding(case.z, case.ids)), got.shape)
    tol = tol + 4 * EPS * np.abs(np.where(finite, expected, 0.0))
    with np.errstate(invalid="ignore"):
        assert (np.abs(got - expected)[finite] <= tol[finite]).all()


def _one_row(s: list[float], others: list[float]) -> tuple[Summaries, np.ndarray, list[int]]:
    z = np.array([[*others, *s]])
    ids = list(range(len(others), len(others) + C))
    return summarise_logits(z, ids), z, ids


def test_dominant_refusal_has_probability_exactly_one_and_meets_threshold_one() -> None:
    summ, z, ids = _one_row([60.0, 0.0, 0.0, 0.0, -np.inf], [0.0, -1.0])
    assert refusal_probabilities(summ)[0, 0] == 1.0
    assert full.probabilities(z, ids)[0, 0] == 1.0
    assert threshold_decision(summ, np.ones(C)).tolist() == [0]


def test_equal_probabilities_go_to_the_lowest_category() -> None:
    summ, _, _ = _one_row([1.0, 2.0, 2.0, 2.0, 0.0], [0.0])
    assert threshold_decision(summ, np.full(C, 0.1)).tolist() == [1]
    assert greedy_bias_decision(summ, np.zeros(C)).tolist() == [1]


def test_underflowed_probabilities_still_rank_by_logit() -> None:
    # p of both eligible categories underflows to 0; the larger logit is the more probable.
    summ, _, _ = _one_row([-2000.0, -1000.0, -np.inf, -np.inf, -np.inf], [0.0])
    assert (refusal_probabilities(summ)[0, :2] == 0.0).all()
    assert threshold_decision(summ, np.zeros(C)).tolist() == [1]


def test_greedy_tie_with_a_non_refusal_token_responds() -> None:
    summ, _, _ = _one_row([3.0, 1.0, 1.0, 1.0, 1.0], [3.0, 0.0])
    assert greedy_bias_decision(summ, np.zeros(C)).tolist() == [-1]
    assert greedy_bias_decision(summ, np.array([1e-9, 0, 0, 0, 0])).tolist() == [0]


def test_disabled_rules_never_refuse() -> None:
    summ, _, _ = _one_row([1e30, 5.0, 5.0, 5.0, 5.0], [0.0])
    assert threshold_decision(summ, np.full(C, np.inf)).tolist() == [-1]
    assert greedy_bias_decision(summ, np.full(C, -np.inf)).tolist() == [-1]
    probs = sampled_bias_probabilities(summ, np.full(C, -np.inf))
    assert probs.tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]


def test_huge_logits_do_not_overflow() -> None:
    summ, _, _ = _one_row([1e300, -1e300, 0.0, 0.0, 0.0], [1e300])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        probs = refusal_probabilities(summ)
        score = refusal_score(summ)
        sampled = sampled_bias_probabilities(summ, np.zeros(C))
    np.testing.assert_allclose(probs[0, :2], [0.5, 0.0])
    np.testing.assert_allclose(score[0, :2], [0.0, -2e300])
    np.testing.assert_allclose(sampled[0].sum(), 1.0)


@pytest.mark.parametrize("shape", [(C - 1,), (2, C), (3, C, 1)])
def test_parameters_of_the_wrong_shape_are_rejected(shape: tuple[int, ...]) -> None:
    summ, _, _ = _one_row([0.0] * C, [0.0])
    with pytest.raises(ValueError, match="shape"):
        threshold_decision(summ, np.zeros(shape))


def test_nan_and_plus_inf_biases_are_rejected() -> None:
    summ, _, _ = _one_row([0.0] * C, [0.0])
    with pytest.raises(ValueError, match="nan"):
        greedy_bias_decision(summ, np.full(C, np.nan))
    with pytest.raises(ValueError, match="inf"):
        sampled_bias_probabilities(summ, np.full(C, np.inf))


def test_empty_summaries_give_empty_decisions() -> None:
    empty = Summaries.empty()
    assert threshold_decision(empty, np.zeros(C)).shape == (0,)
    assert greedy_bias_decision(empty, np.zeros(C)).shape == (0,)
    assert sampled_bias_probabilities(empty, np.zeros(C)).shape == (0, C + 1)
    assert refusal_score(empty).shape == (0, C)
