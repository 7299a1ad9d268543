"""Parsing calibration submissions: inline JSON or a JSONL upload, with line numbers on errors."""

from __future__ import annotations

import json
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.errors import ApiError
from core.categories import CATEGORIES, CLASSES
from db.repositories.calibrations import NewCalibrationItem

Method = Literal["threshold", "greedy_bias", "sampled_bias"]


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
    model_config = ConfigDict(extra="forbid")

    prompt: str | list[dict[str, str]] = Field(min_length=1)
    label: str | None = None

    @field_validator("label")
    @classmethod
    def _known_label(cls, value: str | None) -> str | None:
        if value is not None and value not in CLASSES:
            raise ValueError(f"unknown label {value!r}; known: {', '.join(CLASSES)}")
        return value

    @field_validator("prompt")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        text = value if isinstance(value, str) else "".join(m.get("content", "") for m in value)
        if len(text) > 32_000:
            raise ValueError("prompt longer than 32000 characters")
        return value


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


class CalibrationIn(CalibrationOptions):
    prompts: list[PromptIn] = Field(min_length=1)


class SolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: dict[str, float]
    method: Method | None = None

    _targets = field_validator("targets")(classmethod(lambda cls, v: _check_targets(v)))


def parse_jsonl(data: bytes, *, limit: int) -> list[PromptIn]:
    """One `{"prompt", "label"?}` object per line; errors name the line number."""
    if not data.strip():
        raise ApiError(422, "validation_error", "the upload is empty", field="file")
    prompts: list[PromptIn] = []
    for number, line in enumerate(data.decode("utf-8", errors="strict").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompts.append(PromptIn.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ApiError(
                422,
                "validation_error",
                f"line {number}: not JSON ({exc.msg})",
                field=f"file:{number}",
            ) from None
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(
                422,
                "validation_error",
                f"line {number}: {where}: {first['msg']}",
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
            prompt=p.prompt, label=p.label, split="holdout" if i in holdout else "calibration"
        )
        for i, p in enumerate(prompts)
    ]
