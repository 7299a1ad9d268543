"""The policy editor's form: HTML fields in, the API's own request bodies out.

Field names are the API's dotted paths (`categories.safety.threshold`), so each validation
error of `api.schemas.PolicyIn`/`PolicyUpdate` (and so of `core.policy.CategoryRule`) lands next
to the field it names. This module only turns text into the JSON types the API takes (a number
stays text when it is not one, and the API's validator says so); it validates nothing itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from api.errors import field_path
from api.schemas import PolicyIn, PolicyUpdate
from core.categories import CATEGORIES
from core.policy import BIAS_OFF, InvalidPolicy, PolicyRules, to_json

#: The windows of stored traffic the editor's what-if preview can replay.
PREVIEW_WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
NUMBER_FIELDS = ("threshold", "target_rate", "min_threshold", "max_threshold")
CHECKBOX_FIELDS = ("enabled", "auto_tune")


def _number(text: str) -> float | str | None:
    """A finite number, None when empty, else the text itself (the API refuses it by name)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _bias(text: str) -> float | str | None:
    return BIAS_OFF if text.strip().lower() == BIAS_OFF else _number(text)


def _category(form: Mapping[str, Any], name: str) -> dict[str, Any]:
    prefix = f"categories.{name}."
    rule: dict[str, Any] = {f: form.get(prefix + f) == "on" for f in CHECKBOX_FIELDS}
    for key in NUMBER_FIELDS:
        value = _number(str(form.get(prefix + key, "")))
        if value is not None or key == "target_rate":
            rule[key] = value
    bias = _bias(str(form.get(prefix + "bias", "")))
    if bias is not None:
        rule["bias"] = bias
    message = str(form.get(prefix + "refusal_message", "")).replace("\r\n", "\n")
    rule["refusal_message"] = message if message.strip() else None
    return rule


def rules_payload(form: Mapping[str, Any]) -> dict[str, Any]:
    """`{"mode", "categories"}` as `PUT /v1/policies/{name}` takes it, from the form's fields."""
    return {
        "mode": str(form.get("mode", "")),
        "categories": {name: _category(form, name) for name in CATEGORIES},
    }


@dataclass
class PolicyForm:
    """What the editor shows: the submitted (or stored) values, and errors by field path."""

    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)

    def value(self, path: str, default: Any = "") -> Any:
        """A field's value for the form: the category rule's, the policy's, or `default`."""
        if path.startswith("categories."):
            _, name, key = path.split(".", 2)
            got = self.values.get("categories", {}).get(name, {}).get(key)
            return default if got is None else got
        got = self.values.get(path)
        return default if got is None else got


def form_of_rules(rules: PolicyRules, **extra: Any) -> PolicyForm:
    """The form filled with stored rules (every category present)."""
    return PolicyForm({**to_json(rules), **extra})


@dataclass(frozen=True)
class Parsed:
    """A valid submission: the API body and its rules; or only the errors."""

    body: PolicyIn | PolicyUpdate | None
    rules: PolicyRules | None
    form: PolicyForm


def parse_policy_form(form: FormData | Mapping[str, Any], *, creating: bool) -> Parsed:
    """Validate the editor's fields with the API's request model (`PolicyIn` when creating,
    `PolicyUpdate` for a new version); every error is kept, keyed by its field path."""
    payload = rules_payload(form)
    reason = str(form.get("reason", "")).strip()
    payload["reason"] = reason or None
    if creating:
        payload["name"] = str(form.get("name", "")).strip()
        payload["is_default"] = form.get("is_default") == "on"
    shown = PolicyForm(dict(payload))
    try:
        body: PolicyIn | PolicyUpdate = (
            PolicyIn.model_validate(payload) if creating else PolicyUpdate.model_validate(payload)
        )
        return Parsed(body, body.rules(), shown)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            path = field_path(error["loc"])
            shown.errors.setdefault(path, str(error["msg"]).removeprefix("Value error, "))
    except InvalidPolicy as exc:
        shown.errors[exc.field] = exc.message
    return Parsed(None, None, shown)
