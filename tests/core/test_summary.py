"""First-token summaries: what they keep from full logits, their checks and their storage form."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given

from core.summary import Summaries, logsumexp, summarise_logits
from tests.core.strategies import PROPERTY, C, LogitCase, logit_cases


def _summ(n: int = 2) -> Summaries:
    s = np.arange(n * C, dtype=np.float64).reshape(n, C)
    s[0, 1] = -np.inf
    return Summaries(
        s=s, m=np.ones(n), l1=np.full(n, 2.0), lt=np.full(n, 3.0), temperature=np.ones(n)
    )


def _same(a: Summaries, b: Summaries) -> None:
    for name in ("s", "m", "l1", "lt", "temperature"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_summary_keeps_refusal_logits_and_non_refusal_max_and_partition() -> None:
    z = np.array([[1.0, 9.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5]])
    ids = [1, 2, 3, 4, 5]  # [respond] (say id 0) and ids 6, 7 are non-refusal tokens
    summ = summarise_logits(z, ids, temperature=2.0)
    np.testing.assert_array_equal(summ.s, [[9.0, 2.0, 3.0, 4.0, 5.0]])
    assert summ.m[0] == 6.0
    np.testing.assert_allclose(summ.l1, np.log(np.exp([1.0, 6.0, 0.5]).sum()))
    np.testing.assert_allclose(summ.lt, np.log(np.exp([0.5, 3.0, 0.25]).sum()))
    assert summ.temperature.tolist() == [2.0]


@PROPERTY
@given(case=logit_cases())
def test_summary_at_temperature_one_has_lt_equal_to_l1(case: LogitCase) -> None:
    summ = summarise_logits(case.z, case.ids)
    np.testing.assert_array_equal(summ.lt, summ.l1)
    assert (summ.l1 >= summ.m).all()
    assert np.isfinite(summ.m).all() and np.isfinite(summ.l1).all()


@PROPERTY
@given(case=logit_cases())
def test_rows_round_trip_through_json(case: LogitCase) -> None:
    summ = summarise_logits(case.z, case.ids, case.temperature)
    rows = json.loads(json.dumps(summ.to_rows(), allow_nan=False))
    _same(Summaries.from_rows(rows), summ)


def test_logsumexp_handles_all_minus_inf_and_huge_rows() -> None:
    x = np.array([[-np.inf, -np.inf], [1e300, 1e300], [-np.inf, 0.0]])
    np.testing.assert_allclose(logsumexp(x, axis=1), [-np.inf, 1e300, 0.0])


def test_take_and_concat_select_and_stack_rows() -> None:
    summ = _summ(3)
    picked = summ.take([2, 0])
    assert len(picked) == 2
    np.testing.assert_array_equal(picked.s, summ.s[[2, 0]])
    np.testing.assert_array_equal(summ.take(np.array([True, False, True])).m, summ.m[[0, 2]])
    _same(Summaries.concat([summ.take([0]), summ.take([1, 2])]), summ)
    assert len(Summaries.concat([])) == 0
    assert Summaries.from_rows([]).s.shape == (0, C)


def test_minus_inf_refusal_logit_is_stored_as_null() -> None:
    rows = _summ().to_rows()
    assert rows[0]["s"][1] is None
    assert set(rows[0]) == {"s", "m", "l1", "lt", "temperature"}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("s", np.zeros((2, C - 1)), "s must have shape"),
        ("s", np.full((2, C), np.nan), "nan"),
        ("s", np.full((2, C), np.inf), r"\+inf"),
        ("m", np.zeros(3), "m must have shape"),
        ("l1", np.array([0.0, -np.inf]), "l1 must be finite"),
        ("lt", np.array([0.0, np.nan]), "lt must be finite"),
        ("temperature", np.array([1.0, 0.0]), "temperature must be > 0"),
    ],
)
def test_malformed_summaries_are_rejected(field: str, value: np.ndarray, match: str) -> None:
    good = _summ()
    parts = {name: getattr(good, name) for name in ("s", "m", "l1", "lt", "temperature")}
    parts[field] = value
    with pytest.raises(ValueError, match=match):
        Summaries(**parts)


@pytest.mark.parametrize(
    ("ids", "match"),
    [([0, 1, 2, 3], "refusal ids"), ([0, 1, 2, 3, 3], "distinct"), ([0, 1, 2, 3, 9], "inside")],
)
def test_bad_refusal_ids_are_rejected(ids: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        summarise_logits(np.zeros((1, 7)), ids)


def test_logits_without_a_finite_non_refusal_token_are_rejected() -> None:
    z = np.array([[-np.inf, 0.0, 0.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="finite"):
        summarise_logits(z, [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="non-refusal"):
        summarise_logits(np.zeros((1, C)), list(range(C)))
    with pytest.raises(ValueError, match="temperature"):
        summarise_logits(np.zeros((1, 6)), [1, 2, 3, 4, 5], temperature=0.0)
