"""Request and response bodies of the native API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

from core.policy import CategoryRule, PolicyMode, PolicyRules, parse_rules
from core.sampling import DEFAULT as SAMPLING

#: Why a version was made, kept in the database: any text but NUL, which PostgreSQL cannot store.
Reason = Annotated[str, Field(max_length=1000, pattern=r"^[^\x00]*$")]


class RulesIn(BaseModel):
    """A policy's rules as submitted; category names are checked by `rules()`, which names the
    offending field (`categories.<name>`) as `core.policy.parse_rules` does."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: PolicyMode
    categories: dict[str, CategoryRule] = Field(default_factory=dict)
    reason: Reason | None = None

    def rules(self) -> PolicyRules:
        return parse_rules({"mode": self.mode, "categories": self.categories})


class PolicyIn(RulesIn):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    is_default: bool = False


class PolicyUpdate(RulesIn):
    """A new immutable version of a policy's rules."""

    is_default: bool | None = None


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=1, le=2**31 - 1)  # a PostgreSQL integer
    reason: Reason | None = None


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
    #: Decided on every request from the same first-token summary, never enforced.
    shadow_version: VersionOut | None = None
    created_at: datetime


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason | None = None


MAX_PROMPT_CHARS = 32_000
MAX_MESSAGES = 64


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


#: A prompt as plain text (one user turn) ...
PromptText = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
#: ... or as chat messages; generations and calibration prompts accept exactly these.
ChatMessages = Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]


def _prompt_kind(value: Any) -> str:
    return "messages" if isinstance(value, list) else "text"


#: Either form in one field (calibration prompts); errors name the form, e.g.
#: `prompt.messages.0.role`.
PromptOrMessages = Annotated[
    Annotated[PromptText, Tag("text")] | Annotated[ChatMessages, Tag("messages")],
    Discriminator(_prompt_kind),
]


class SamplingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_tokens: int = Field(default=SAMPLING.max_new_tokens, ge=1, le=4096)
    temperature: float = Field(default=SAMPLING.temperature, ge=0.0, le=5.0, allow_inf_nan=False)
    top_p: float = Field(default=SAMPLING.top_p, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class GenerationIn(SamplingIn):
    prompt: PromptText | None = None
    # Validated even when absent, so "exactly one of" names this field, not the whole body.
    messages: ChatMessages | None = Field(default=None, validate_default=True)
    policy: str | None = Field(default=None, max_length=100)
    wait: bool = False
    stream: bool = Field(
        default=False,
        description="send server-sent events as tokens are made: decision, text..., done",
    )
    timeout: float = Field(default=30.0, gt=0, le=300)

    @field_validator("messages")
    @classmethod
    def _prompt_or_messages(
        cls, value: list[Message] | None, info: ValidationInfo
    ) -> list[Message] | None:
        if (info.data.get("prompt") is None) == (value is None) and "prompt" in info.data:
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return value

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
