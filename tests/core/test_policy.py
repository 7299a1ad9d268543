"""Policy rules: validation names the offending field, storage round-trips, compiled vectors."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.categories import CATEGORIES
from core.policy import (
    CategoryRule,
    InvalidPolicy,
    PolicyRules,
    bias_vector,
    parse_rules,
    threshold_vector,
    to_json,
)
from tests.core.strategies import PROPERTY


def _with_rule(**fields: Any) -> dict[str, Any]:
    return {"mode": "threshold", "categories": {"safety": fields}}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "mode"),
        ({"mode": "both"}, "mode"),
        ({"mode": "bias", "owner": "me"}, "owner"),
        ({"mode": "bias", "categories": ["safety"]}, "categories"),
        ({"mode": "bias", "categories": {"violence": {}}}, "categories.violence"),
        ({"mode": "bias", "categories": {"safety": 0.5}}, "categories.safety"),
        (_with_rule(colour="red"), "categories.safety.colour"),
        (_with_rule(enabled="yes"), "categories.safety.enabled"),
        (_with_rule(enabled=1), "categories.safety.enabled"),
        (_with_rule(bias=math.nan), "categories.safety.bias"),
        (_with_rule(bias=math.inf), "categories.safety.bias"),
        (_with_rule(bias=-math.inf), "categories.safety.bias"),
        (_with_rule(bias="on"), "categories.safety.bias"),
        (_with_rule(bias="-inf"), "categories.safety.bias"),
        (_with_rule(bias=True), "categories.safety.bias"),
        (_with_rule(threshold=1.5), "categories.safety.threshold"),
        (_with_rule(threshold=-0.1), "categories.safety.threshold"),
        (_with_rule(threshold=math.nan), "categories.safety.threshold"),
        (_with_rule(threshold="0.5"), "categories.safety.threshold"),
        (_with_rule(target_rate=2), "categories.safety.target_rate"),
        (_with_rule(auto_tune="true"), "categories.safety.auto_tune"),
        (_with_rule(min_threshold=-1), "categories.safety.min_threshold"),
        (_with_rule(max_threshold=1.01), "categories.safety.max_threshold"),
        (_with_rule(min_threshold=0.6, max_threshold=0.4), "categories.safety.max_threshold"),
        (_with_rule(refusal_message=""), "categories.safety.refusal_message"),
        (_with_rule(refusal_message="   "), "categories.safety.refusal_message"),
        (_with_rule(refusal_message="x" * 2001), "categories.safety.refusal_message"),
        (_with_rule(refusal_message=7), "categories.safety.refusal_message"),
        ("bias", ""),
    ],
)
def test_invalid_rules_name_the_offending_field(data: Any, field: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        parse_rules(data)
    assert caught.value.field == field
    assert caught.value.message
    assert isinstance(caught.value, ValueError)


def test_unknown_category_message_lists_the_known_ones() -> None:
    with pytest.raises(InvalidPolicy, match="unknown category 'violence'") as caught:
        parse_rules({"mode": "bias", "categories": {"violence": {}}})
    assert all(name in caught.value.message for name in CATEGORIES)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_bias_points_to_off(bad: float) -> None:
    with pytest.raises(InvalidPolicy, match='use "off"'):
        parse_rules(_with_rule(bias=bad))


def test_missing_categories_get_defaults_in_registry_order() -> None:
    rules = parse_rules({"mode": "bias", "categories": {"safety": {"bias": 2}}})
    assert tuple(rules.categories) == CATEGORIES
    assert rules.categories["safety"].bias == 2.0
    assert rules.categories["incomplete"] == CategoryRule()


def test_threshold_outside_the_auto_tune_bounds_is_accepted() -> None:
    rules = parse_rules(_with_rule(threshold=0.9, min_threshold=0.1, max_threshold=0.5))
    assert rules.categories["safety"].threshold == 0.9


def test_compiled_vectors_follow_categories_and_switch_off() -> None:
    rules = parse_rules(
        {
            "mode": "bias",
            "categories": {
                "incomplete": {"bias": 1.5, "threshold": 0.2},
                "unsupported": {"bias": "off", "threshold": 0.3},
                "humanizing": {"enabled": False, "bias": 4, "threshold": 0.1},
                "safety": {"bias": -2, "threshold": 1},
            },
        }
    )
    bias = bias_vector(rules)
    tau = threshold_vector(rules)
    assert bias.dtype == np.float64 and tau.dtype == np.float64
    assert bias.tolist() == [1.5, -np.inf, 0.0, -np.inf, -2.0]
    assert tau.tolist() == [0.2, 0.3, 0.5, np.inf, 1.0]


rule_dicts = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.booleans(),
        "bias": st.one_of(st.just("off"), st.floats(allow_nan=False, allow_infinity=False)),
        "threshold": st.floats(0.0, 1.0),
        "target_rate": st.one_of(st.none(), st.floats(0.0, 1.0)),
        "auto_tune": st.booleans(),
        "min_threshold": st.floats(0.0, 0.5),
        "max_threshold": st.floats(0.5, 1.0),
    },
)
rules_data = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(["bias", "threshold"]),
        "categories": st.dictionaries(st.sampled_from(CATEGORIES), rule_dicts),
    }
)


@PROPERTY
@given(data=rules_data)
def test_rules_round_trip_through_stored_json(data: dict[str, Any]) -> None:
    rules = parse_rules(data)
    stored = json.loads(json.dumps(to_json(rules), allow_nan=False))
    again = parse_rules(stored)
    assert again == rules
    assert to_json(again) == stored
    assert isinstance(again, PolicyRules)


def test_refusal_messages_compile_per_category_in_registry_order() -> None:
    from core.categories import CATEGORIES
    from core.policy import refusal_messages

    rules = parse_rules(
        {"mode": "threshold", "categories": {"safety": {"refusal_message": "Call for help."}}}
    )
    messages = refusal_messages(rules)
    assert messages[CATEGORIES.index("safety")] == "Call for help."
    assert sum(m is not None for m in messages) == 1
    assert parse_rules(to_json(rules)) == rules


def test_with_rules_changes_a_copy_and_keeps_the_rest() -> None:
    rules = parse_rules(
        {"mode": "bias", "categories": {"safety": {"bias": 2.0, "auto_tune": True}}}
    )
    safety = rules.rule("safety").model_copy(update={"threshold": 0.2})
    tuned = rules.with_rules({"safety": safety}, mode="threshold")
    assert tuned.mode == "threshold" and tuned.rule("safety").threshold == 0.2
    assert tuned.rule("safety").bias == 2.0 and tuned.rule("safety").auto_tune
    assert list(tuned.categories) == list(CATEGORIES)
    assert rules.mode == "bias" and rules.rule("safety").threshold == 0.5  # the original stays
    assert parse_rules(to_json(tuned)) == tuned
