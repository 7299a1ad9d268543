"""Refusal rates move monotonically with each category's bias or threshold (what calibration needs).

Every property is checked per prompt, which implies it for the rate over any prompt set.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.decision import greedy_bias_decision, sampled_bias_probabilities, threshold_decision
from core.summary import summarise_logits
from tests.core.strategies import (
    PROPERTY,
    C,
    LogitCase,
    bias_values,
    logit_cases,
    per_category,
    threshold_values,
)
from tests.core.tolerance import ATOL


@PROPERTY
@given(case=logit_cases(), data=st.data())
def test_raising_a_bias_only_moves_prompts_to_that_category_greedily(
    case: LogitCase, data: st.DataObject
) -> None:
    summ = summarise_logits(case.z, case.ids)
    low = data.draw(per_category(bias_values))
    cat = data.draw(st.integers(0, C - 1))
    high = low.copy()
    high[cat] = max(low[cat], data.draw(bias_values))
    before = greedy_bias_decision(summ, low)
    after = greedy_bias_decision(summ, high)
    assert ((after == before) | (after == cat)).all()
    assert (after[before == cat] == cat).all()
    assert (after == cat).sum() >= (before == cat).sum()


@PROPERTY
@given(case=logit_cases(), data=st.data())
def test_raising_a_bias_never_lowers_its_sampled_refusal_probability(
    case: LogitCase, data: st.DataObject
) -> None:
    summ = summarise_logits(case.z, case.ids, case.temperature)
    low = data.draw(per_category(bias_values))
    cat = data.draw(st.integers(0, C - 1))
    high = low.copy()
    high[cat] = max(low[cat], data.draw(bias_values))
    before = sampled_bias_probabilities(summ, low)
    after = sampled_bias_probabilities(summ, high)
    # Exact arithmetic is monotone; allow for rounding of the shifted exponentials and their sum.
    slack = ATOL + 1e-12 * np.maximum(before, after)
    assert (after[:, cat] >= before[:, cat] - slack[:, cat]).all()
    others = [k for k in range(C + 1) if k != cat]
    assert (after[:, others] <= before[:, others] + slack[:, others]).all()


@PROPERTY
@given(case=logit_cases(), data=st.data())
def test_lowering_a_threshold_only_moves_prompts_to_that_category(
    case: LogitCase, data: st.DataObject
) -> None:
    # Lowering tau_c can only make c eligible where it was not; the argmax over the eligible
    # set then either stays or becomes c, so c's rate rises and no other category's rate does.
    summ = summarise_logits(case.z, case.ids)
    high = data.draw(per_category(threshold_values))
    cat = data.draw(st.integers(0, C - 1))
    low = high.copy()
    low[cat] = min(high[cat], data.draw(threshold_values))
    before = threshold_decision(summ, high)
    after = threshold_decision(summ, low)
    assert ((after == before) | (after == cat)).all()
    assert (after[before == cat] == cat).all()
    assert (after == cat).sum() >= (before == cat).sum()
