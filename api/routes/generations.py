"""Native generation API: submit (sync with `wait`, streamed with `stream`, else 202 +
Location), read, cancel."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.deps import CLIENT, Principal, SessionDep, SubmittingMember, TenantMember
from api.errors import ApiError, ErrorBody
from api.metrics import observe_generation
from api.openapi import AUTHENTICATED, JSON_BODY, errors, links
from api.schemas import GenerationIn, GenerationOut
from api.streaming import GenerationStream, StreamNotStarted, open_stream, sse
from api.submissions import submit_and_wait, submit_generation
from db.errors import GenerationNotFound
from db.models import FINAL_STATUSES, Generation
from db.repositories import generations as repo
from services.generations import read_generation

router = APIRouter(prefix="/v1/generations", tags=["generations"], responses=errors(*AUTHENTICATED))


def _ms(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else round((b - a).total_seconds() * 1000, 3)


def generation_out(row: Generation) -> GenerationOut:
    return GenerationOut(
        id=row.id,
        status=row.status,
        model=row.model,
        policy_version_id=row.policy_version_id,
        output=row.output,
        refused=row.refused,
        refusal_category=row.refusal_category,
        probabilities=row.probabilities,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        timings={
            "queue_ms": _ms(row.created_at, row.started_at),
            "run_ms": _ms(row.started_at, row.finished_at),
            "total_ms": _ms(row.created_at, row.finished_at),
        },
    )


def visible_generation(
    session: Session, principal: Principal, generation_id: uuid.UUID
) -> Generation:
    """A generation of the caller's tenant; a client key sees only its own (404 otherwise)."""
    row = repo.get_generation(
        session=session, tenant_id=principal.require_tenant(), generation_id=generation_id
    )
    if principal.role == CLIENT and row.api_key_id != principal.key_id:
        raise GenerationNotFound(generation_id)
    return row


async def _native_events(stream: GenerationStream) -> AsyncIterator[str]:
    """`decision`, then `text` pieces, then `done` with the recorded generation (or `error`)."""
    first = stream.first
    assert first is not None
    if first.type == "decision":
        yield sse(json.dumps(_decision(first.category, first.probabilities)), "decision")
        async for event in stream.events():
            if event.type == "text":
                yield sse(json.dumps({"text": event.text}), "text")
    row = await stream.final_row()
    if row.status not in FINAL_STATUSES:
        yield sse(json.dumps({"type": "timeout", "message": "not finished in time"}), "error")
        return
    if first.type == "final":  # the stream held no decision: take it from the record
        yield sse(json.dumps(_decision(row.refusal_category, row.probabilities)), "decision")
    rest = (row.output or "")[len(stream.sent) :] if row.status == "succeeded" else ""
    if rest and (row.output or "").startswith(stream.sent):
        yield sse(json.dumps({"text": rest}), "text")
    observe_generation(row)
    yield sse(generation_out(row).model_dump_json(), "done")


def _decision(category: str | None, probabilities: object) -> dict[str, object]:
    return {"refused": category is not None, "category": category, "probabilities": probabilities}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GenerationOut,
    responses={
        200: {
            "model": GenerationOut,
            "description": "Finished within `timeout` (with `wait`), or with `stream` the "
            "server-sent events `decision`, `text`..., `done`",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        202: {
            "description": "Queued; poll `Location` (also with `wait` when not finished in time, "
            "and with `stream` when not started in time)",
            "headers": {"Location": {"schema": {"type": "string"}}},
            **links(
                "id",
                {
                    "GetGeneration": ("get", "/v1/generations/{generation_id}"),
                    "CancelGeneration": ("post", "/v1/generations/{generation_id}/cancel"),
                },
            ),
        },
        **errors(*JSON_BODY, 404, 409),
        502: {"model": ErrorBody, "description": "With `stream`: the worker failed it"},
    },
)
async def create_generation(
    body: GenerationIn,
    request: Request,
    response: Response,
    principal: SubmittingMember,
) -> GenerationOut | StreamingResponse:
    if body.wait and not body.stream:
        row = await submit_and_wait(request, principal, body, body.timeout)
        response.headers["Location"] = f"/v1/generations/{row.id}"
        if row.status in FINAL_STATUSES:
            response.status_code = status.HTTP_200_OK
        return generation_out(row)
    row = await submit_generation(request, principal, body)
    location = f"/v1/generations/{row.id}"
    response.headers["Location"] = location
    if body.stream:
        state = request.app.state
        try:
            stream = await open_stream(state.redis, state.session_factory, row.id, body.timeout)
        except StreamNotStarted:  # the caller's own timeout: like `wait`, the row as it is now
            now = await run_in_threadpool(read_generation, state.session_factory, row.id)
            if now.status in FINAL_STATUSES:
                response.status_code = status.HTTP_200_OK
            return generation_out(now)
        return StreamingResponse(
            _native_events(stream),
            media_type="text/event-stream",
            headers={"Location": location, "Cache-Control": "no-cache"},
        )
    return generation_out(row)


@router.get("/{generation_id}", responses=errors(404, 422))
def get_generation(
    generation_id: uuid.UUID, principal: TenantMember, session: SessionDep
) -> GenerationOut:
    return generation_out(visible_generation(session, principal, generation_id))


@router.post("/{generation_id}/cancel", responses=errors(404, 409, 422))
def cancel_generation(
    generation_id: uuid.UUID, principal: TenantMember, session: SessionDep
) -> GenerationOut:
    """Cancel a queued generation; one already running or finished is 409."""
    row = visible_generation(session, principal, generation_id)
    if row.status != "queued" or not repo.mark_cancelled(
        session=session, generation_id=row.id, tenant_id=principal.require_tenant()
    ):
        raise ApiError(
            409, "conflict", f"generation is {row.status}; only queued generations can be cancelled"
        )
    session.commit()
    session.refresh(row)
    return generation_out(row)
