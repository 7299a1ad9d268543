"""Parsing calibration submissions: inline JSON or a JSONL upload, with line numbers on errors."""

from __future__ import annotations

import json
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.errors import ApiError, validation_error
from api.nul_characters import MESSAGE as NUL_MESSAGE
from api.nul_characters import may_hold_nul, nul_path
from api.schemas import PromptOrMessages
from core.calibration_problem import Method
from core.categories import CATEGORIES, CLASSES
from db.repositories.calibrations import NewCalibrationItem, NewCalibrationRun


def _check_targets(targets: dict[str, float]) -> dict[str, float]:
    if not targets:
        raise ValueError("give at least one category target")
    for name, value in targets.items():
        if name not in CATEGORIES:
            raise ValueError(f"unknown category {name!r}; known: {', '.join(CATEGORIES)}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"target for {name!r} must be in [0, 1], got {value}")
    return targets


class PromptIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: PromptOrMessages
    label: str | None = None

    @field_validator("label")
    @classmethod
    def _known_label(cls, value: str | None) -> str | None:
        if value is not None and value not in CLASSES:
            raise ValueError(f"unknown label {value!r}; known: {', '.join(CLASSES)}")
        return value

    def stored(self) -> str | list[dict[str, str]]:
        """The prompt as the worker reads it: text, or messages as plain dicts."""
        if isinstance(self.prompt, str):
            return self.prompt
        return [m.model_dump() for m in self.prompt]


class CalibrationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1, max_length=100)
    targets: dict[str, float]
    method: Method | None = None
    target_kind: Literal["traffic", "labelled"] = "traffic"
    holdout_fraction: float = Field(default=0.2, ge=0.0, le=0.9)
    auto_apply: bool = False
    seed: int = Field(default=0, ge=0)

    _targets = field_validator("targets")(classmethod(lambda cls, v: _check_targets(v)))

    def new_run(self) -> NewCalibrationRun:
        """The run these options ask for (its prompts are stored apart, as items)."""
        return NewCalibrationRun(
            self.targets, self.method, self.target_kind, self.holdout_fraction, self.auto_apply
        )


class CalibrationIn(CalibrationOptions):
    prompts: list[PromptIn] = Field(min_length=1)


class CalibrationUpload(CalibrationOptions):
    """The multipart form of a submission, for the OpenAPI document: the prompts as a JSONL file
    (one `{"prompt", "label"?}` per line), the options as form fields."""

    # A form field is text: the JSON object arrives as a string, narrowing the parent's dict.
    targets: str = Field(description='a JSON object of target rates, e.g. {"safety": 0.1}')  # type: ignore[assignment]  # documents the form, never validated
    file: bytes = Field(description="JSONL, one prompt per line")


class SolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    targets: dict[str, float]
    method: Method | None = None

    _targets = field_validator("targets")(classmethod(lambda cls, v: _check_targets(v)))


def parse_json(data: bytes | str, *, field: str) -> Any:
    """JSON from a body or a line; anything unreadable (bad UTF-8 or JSON, nesting too deep for
    the parser) or holding a NUL character (`api/nul_characters.py`) is one 4xx naming `field`."""
    try:
        value = json.loads(data)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "not valid UTF-8", field=field) from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"not valid JSON ({exc.msg})", field=field) from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "JSON nested too deep", field=field) from None
    if may_hold_nul(data) and nul_path(value) is not None:
        raise ApiError(422, "validation_error", NUL_MESSAGE, field=field)
    return value


def parse_jsonl(data: bytes, *, limit: int) -> list[PromptIn]:
    """One `{"prompt", "label"?}` object per line; errors name the line number."""
    if not data.strip():
        raise ApiError(422, "validation_error", "the upload is empty", field="file")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise ApiError(
            422, "validation_error", f"line {bad_line}: not valid UTF-8", field=f"file:{bad_line}"
        ) from None
    prompts: list[PromptIn] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompts.append(PromptIn.model_validate(parse_json(line, field=f"file:{number}")))
        except ApiError as exc:
            raise ApiError(
                422, "validation_error", f"line {number}: {exc.message}", field=exc.field
            ) from None
        except ValidationError as exc:
            error = validation_error(exc)
            raise ApiError(
                422,
                "validation_error",
                f"line {number}: {error.field}: {error.message}",
                field=f"file:{number}",
            ) from None
        if len(prompts) > limit:
            raise ApiError(413, "too_large", f"more than {limit} prompts", field="file")
    return prompts


def split_items(
    prompts: list[PromptIn], *, holdout_fraction: float, seed: int, labelled: bool
) -> list[NewCalibrationItem]:
    """Assign a seeded random `holdout_fraction` of the prompts to the held-out split."""
    if labelled and any(p.label is None for p in prompts):
        missing = next(i for i, p in enumerate(prompts) if p.label is None)
        raise ApiError(
            422,
            "validation_error",
            f"labelled targets need a label on every prompt (prompt {missing})",
            field=f"prompts.{missing}.label",
        )
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    holdout = set(order[: round(len(prompts) * holdout_fraction)])
    if len(holdout) == len(prompts):
        raise ApiError(
            422, "validation_error", "no prompt left to calibrate on", field="holdout_fraction"
        )
    return [
        NewCalibrationItem(
            prompt=p.stored(), label=p.label, split="holdout" if i in holdout else "calibration"
        )
        for i, p in enumerate(prompts)
    ]
