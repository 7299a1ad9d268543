"""Refusal policy rules: the one typed value of a policy version, its validation and compilation.

`PolicyRules` (a mode and a `CategoryRule` per category, whose defaults live here only) is what
the API validates, a policy version stores (as `to_json`, in its one `rules` column) and returns,
the dashboard reads, and calibration and the auto-tuner change by copy (`with_rules`). Workers
compile it into per-category vectors in `CATEGORIES` order (`bias_vector`, `threshold_vector`).
Every validation error names the offending field as a dotted path so the API can point at it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from core.categories import CATEGORIES, UnknownCategory

BIAS_OFF: Final = "off"
PolicyMode = Literal["bias", "threshold"]
POLICY_MODES: tuple[PolicyMode, ...] = ("bias", "threshold")
#: Every tenant has a policy of this name from its creation; it starts as `MODEL_DECISION`.
DEFAULT_POLICY_NAME = "default"
#: Longest text a policy may give to answer with when a category refuses.
MAX_REFUSAL_MESSAGE_CHARS = 2000


class InvalidPolicy(ValueError):
    """Policy rules that cannot be served; `field` is the dotted path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _parse_bias(value: Any) -> float | Literal["off"]:
    """A finite number, or "off" (the category's refusal token is never emitted, bias -inf)."""
    if isinstance(value, str) and value == BIAS_OFF:
        return BIAS_OFF
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError('bias must be a number or "off"')
    if not math.isfinite(value):
        raise ValueError(f'bias must be finite, got {value}; use "off" to switch the category off')
    return float(value)


def _known_category(name: str) -> str:
    if name not in CATEGORIES:
        raise UnknownCategory(name)
    return name


Bias = Annotated[
    float | Literal["off"],
    PlainValidator(_parse_bias, json_schema_input_type=float | Literal["off"]),
]
UnitFloat = Annotated[float, Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)]
StrictBool = Annotated[bool, Field(strict=True)]
CategoryName = Annotated[str, AfterValidator(_known_category)]


class CategoryRule(BaseModel):
    """How one category is steered; `min/max_threshold` bound what the auto-tuner may choose.

    `refusal_message`, when set, is the answer given when this category refuses: the row leaves
    the batch right after its first (control) token instead of decoding a refusal of its own.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = True
    bias: Bias = 0.0
    threshold: UnitFloat = 0.5
    target_rate: UnitFloat | None = None
    auto_tune: StrictBool = False
    min_threshold: UnitFloat = 0.0
    max_threshold: UnitFloat = 1.0
    refusal_message: str | None = Field(
        default=None, min_length=1, max_length=MAX_REFUSAL_MESSAGE_CHARS
    )

    @field_validator("refusal_message")
    @classmethod
    def _message_has_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("refusal_message must contain text (or be left out)")
        if value is not None and "\x00" in value:  # a stored version could not hold it
            raise ValueError("refusal_message must not contain NUL characters")
        return value

    @field_validator("max_threshold")
    @classmethod
    def _bounds_ordered(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_threshold")
        if low is not None and value < low:
            raise ValueError(f"max_threshold ({value}) must be >= min_threshold ({low})")
        return value


class PolicyRules(BaseModel):
    """A policy version's rules; after parsing every category is present, in `CATEGORIES` order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: PolicyMode
    categories: dict[CategoryName, CategoryRule] = Field(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _fill_defaults(cls, value: dict[str, CategoryRule]) -> dict[str, CategoryRule]:
        return {name: value.get(name, CategoryRule()) for name in CATEGORIES}

    def rule(self, name: str) -> CategoryRule:
        """The rule of category `name` (every category has one after parsing)."""
        return self.categories[name]

    def with_rules(
        self, changes: Mapping[str, CategoryRule], *, mode: PolicyMode | None = None
    ) -> PolicyRules:
        """A copy with the rules of `changes` (and `mode`, when given) replaced; the rules are
        already valid, so only their category names are checked."""
        for name in changes:
            _known_category(name)
        return self.model_copy(
            update={"mode": mode or self.mode, "categories": {**self.categories, **changes}}
        )


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "[key]")


def parse_rules(data: Any) -> PolicyRules:
    """Validate stored or submitted rules (`{"mode", "categories"}`, whose rules may be JSON or
    `CategoryRule`s already); raise `InvalidPolicy` naming the first bad field."""
    try:
        return PolicyRules.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidPolicy(_field_path(first["loc"]), message) from None


def to_json(rules: PolicyRules) -> dict[str, Any]:
    """Plain JSON-ready dict (a switched-off bias stays the string "off"); `parse_rules` inverts it."""
    return rules.model_dump(mode="json")


def bias_vector(rules: PolicyRules) -> np.ndarray:
    """(C,) float64 logit biases in `CATEGORIES` order; -inf for "off" or disabled categories."""
    out = np.zeros(len(CATEGORIES), dtype=np.float64)
    for i, name in enumerate(CATEGORIES):
        rule = rules.rule(name)
        out[i] = -np.inf if not rule.enabled or rule.bias == BIAS_OFF else float(rule.bias)
    return out


def refusal_messages(rules: PolicyRules) -> tuple[str | None, ...]:
    """(C,) the text to answer per refusing category, in `CATEGORIES` order; None: the model's."""
    return tuple(rules.rule(name).refusal_message for name in CATEGORIES)


def threshold_vector(rules: PolicyRules) -> np.ndarray:
    """(C,) float64 probability thresholds in `CATEGORIES` order; +inf (never met) when disabled."""
    out = np.zeros(len(CATEGORIES), dtype=np.float64)
    for i, name in enumerate(CATEGORIES):
        rule = rules.rule(name)
        out[i] = rule.threshold if rule.enabled else np.inf
    return out


#: The model's own first-token decision: bias mode, no bias on any category.
MODEL_DECISION = parse_rules({"mode": "bias", "categories": {}})
