"""OpenAI-compatible chat completions and models, so existing OpenAI SDKs work unchanged.

A refusal comes back the OpenAI way (`message.refusal` holds the text, `content` is null) plus
the extension field `refusal_control` with the category and first-token probabilities. The
policy is chosen with the extension field `policy` (`extra_body`), else the tenant's default.
Streaming sends the finished generation as server-sent chunks: the worker decodes a whole batch
at once, so tokens are not streamed as they are produced.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import SubmittingMember, TenantMember
from api.errors import ApiError, ErrorBody, validation_error
from api.openapi import AUTHENTICATED, JSON_BODY, errors
from api.schemas import MAX_MESSAGES, MAX_PROMPT_CHARS, GenerationIn
from api.streaming import GenerationStream, StreamNotStarted, open_stream, row_error, sse
from api.submissions import submit_and_wait, submit_generation
from db.models import FINAL_STATUSES, Generation

router = APIRouter(prefix="/v1", tags=["openai"], responses=errors(*AUTHENTICATED))
SYNC_TIMEOUT_SECONDS = 120.0


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str = Field(max_length=MAX_PROMPT_CHARS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | list[TextPart]

    def plain(self) -> dict[str, str]:
        text = (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    policy: str | None = Field(default=None, max_length=100, description="extension: policy name")


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "refusal-control-service"}


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


@router.get("/models", response_model=ModelList)
def list_models(request: Request, principal: TenantMember) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(request.app.state.model_name)]}


@router.get("/models/{model}", response_model=ModelCard, responses=errors(404))
def get_model(model: str, request: Request, principal: TenantMember) -> dict[str, Any]:
    if model != request.app.state.model_name:
        raise ApiError(404, "model_not_found", f"model {model!r} is not served here", field="model")
    return _model_card(model)


def _finish_reason(row: Generation) -> str:
    limit = int((row.params or {}).get("max_tokens", 0))
    return (
        "length" if row.completion_tokens is not None and row.completion_tokens >= limit else "stop"
    )


def _extension(row: Generation) -> dict[str, Any]:
    return {
        "generation_id": str(row.id),
        "policy_version_id": str(row.policy_version_id),
        "refused": row.refused,
        "category": row.refusal_category,
        "probabilities": row.probabilities,
    }


def completion_body(row: Generation) -> dict[str, Any]:
    refused = bool(row.refused)
    return {
        "id": f"chatcmpl-{row.id}",
        "object": "chat.completion",
        "created": int(row.created_at.timestamp()),
        "model": row.model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None if refused else row.output,
                    "refusal": row.output if refused else None,
                },
                "finish_reason": _finish_reason(row),
                "logprobs": None,
            }
        ],
        "usage": _usage(row),
        "refusal_control": _extension(row),
    }


def _usage(row: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": row.prompt_tokens or 0,
        "completion_tokens": row.completion_tokens or 0,
        "total_tokens": (row.prompt_tokens or 0) + (row.completion_tokens or 0),
    }


async def _chunks(
    stream: GenerationStream, head: dict[str, Any], *, include_usage: bool
) -> AsyncIterator[str]:
    """Decision chunk (role + `refusal_control`), text pieces, final chunk, `[DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse(json.dumps({**head, "choices": [choice], **extra}))

    first = stream.first
    assert first is not None
    row = await stream.final_row() if first.type == "final" else None
    category = row.refusal_category if row is not None else first.category
    probabilities = row.probabilities if row is not None else first.probabilities
    key = "refusal" if category is not None else "content"
    decision = {
        "generation_id": head["id"].removeprefix("chatcmpl-"),
        "refused": category is not None,
        "category": category,
        "probabilities": probabilities,
    }
    yield chunk({"role": "assistant", key: ""}, refusal_control=decision)
    if row is None:
        async for event in stream.events():
            if event.type == "text":
                yield chunk({key: event.text})
        row = await stream.final_row()
    if row.status != "succeeded":
        timed_out = row.status in ("queued", "running")
        message = "not finished in time" if timed_out else row.error or f"generation {row.status}"
        yield sse(
            json.dumps(
                {"error": {"type": "timeout" if timed_out else row.status, "message": message}}
            )
        )
        return
    output = row.output or ""
    if len(output) > len(stream.sent) and output.startswith(stream.sent):
        yield chunk({key: output[len(stream.sent) :]})
    extra: dict[str, Any] = {"refusal_control": _extension(row)}
    if include_usage:
        extra["usage"] = _usage(row)
    yield chunk({}, _finish_reason(row), **extra)
    yield "data: [DONE]\n\n"


@router.post(
    "/chat/completions",
    response_model=None,
    responses={
        200: {
            "description": "The completion (an OpenAI `chat.completion` plus `refusal_control`), "
            "or with `stream` its server-sent chunks",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **errors(*JSON_BODY, 404, 409),
        502: {"model": ErrorBody, "description": "The worker failed the generation"},
        504: {"model": ErrorBody, "description": "Not finished in time; poll the generation"},
    },
)
async def chat_completions(
    body: ChatCompletionIn, request: Request, principal: SubmittingMember
) -> dict[str, Any] | StreamingResponse:
    if body.model != request.app.state.model_name:
        raise ApiError(
            404, "model_not_found", f"model {body.model!r} is not served here", field="model"
        )
    try:  # the same limits as a native request; a joined list of parts can still exceed them
        native = GenerationIn.model_validate(
            {
                "messages": [m.plain() for m in body.messages],
                "max_tokens": body.max_completion_tokens or body.max_tokens or 256,
                "temperature": body.temperature,
                "top_p": body.top_p,
                "seed": body.seed,
                "policy": body.policy,
                "stream": body.stream,
            }
        )
    except ValidationError as exc:
        raise validation_error(exc) from None
    started = time.monotonic()
    if not body.stream:
        row = await submit_and_wait(request, principal, native, SYNC_TIMEOUT_SECONDS)
        if row.status not in FINAL_STATUSES:
            waited = time.monotonic() - started
            raise ApiError(
                504,
                "timeout",
                f"generation {row.id} not finished after {waited:.0f}s; poll /v1/generations/{row.id}",
            )
        row_error(row)
        return completion_body(row)
    row = await submit_generation(request, principal, native)
    state = request.app.state
    try:
        stream = await open_stream(state.redis, state.session_factory, row.id, SYNC_TIMEOUT_SECONDS)
    except StreamNotStarted as exc:  # the fixed timeout passed: the service is behind
        raise ApiError(504, "timeout", str(exc)) from None
    head = {
        "id": f"chatcmpl-{row.id}",
        "object": "chat.completion.chunk",
        "created": int(row.created_at.timestamp()),
        "model": row.model,
    }
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    return StreamingResponse(
        _chunks(stream, head, include_usage=include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
