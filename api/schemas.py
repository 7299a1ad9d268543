"""Request and response bodies of the native API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.policy import CategoryRule, PolicyMode, PolicyRules, parse_rules
from core.sampling import DEFAULT as SAMPLING


class RulesIn(BaseModel):
    """A policy's rules as submitted; category names are checked by `rules()`, which names the
    offending field (`categories.<name>`) as `core.policy.parse_rules` does."""

    model_config = ConfigDict(extra="forbid")

    mode: PolicyMode
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    reason: str | None = Field(default=None, max_length=1000)

    def rules(self) -> PolicyRules:
        return parse_rules({"mode": self.mode, "categories": self.categories})


class PolicyIn(RulesIn):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    is_default: bool = False


class PolicyUpdate(RulesIn):
    """A new immutable version of a policy's rules."""

    is_default: bool | None = None


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    reason: str | None = Field(default=None, max_length=1000)


class VersionOut(BaseModel):
    version: int
    mode: str
    rules: dict[str, Any]
    created_by: str
    reason: str | None
    created_at: datetime


class PolicyOut(BaseModel):
    id: uuid.UUID
    name: str
    is_default: bool
    active_version: VersionOut | None
    created_at: datetime


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=32_000)


class SamplingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=SAMPLING.max_new_tokens, ge=1, le=4096)
    temperature: float = Field(default=SAMPLING.temperature, ge=0.0, le=5.0, allow_inf_nan=False)
    top_p: float = Field(default=SAMPLING.top_p, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class GenerationIn(SamplingIn):
    prompt: str | None = Field(default=None, min_length=1, max_length=32_000)
    messages: list[Message] | None = Field(default=None, min_length=1, max_length=64)
    policy: str | None = Field(default=None, max_length=100)
    wait: bool = False
    stream: bool = Field(
        default=False,
        description="send server-sent events as tokens are made: decision, text..., done",
    )
    timeout: float = Field(default=30.0, gt=0, le=300)

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> GenerationIn:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self

    def chat(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]

    def sampling(self) -> dict[str, Any]:
        return SamplingIn.model_validate(
            self.model_dump(include=set(SamplingIn.model_fields))
        ).model_dump()


class GenerationOut(BaseModel):
    id: uuid.UUID
    status: str
    model: str
    policy_version_id: uuid.UUID
    output: str | None
    refused: bool | None
    refusal_category: str | None
    probabilities: dict[str, float] | None
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    timings: dict[str, float | None]
