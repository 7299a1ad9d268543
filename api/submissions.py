"""The API's side of submitting and waiting for generations, shared by the native and the
OpenAI-compatible routes: who is calling, and the services' errors as HTTP errors."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request

from api.deps import Principal
from api.errors import ApiError
from api.metrics import observe_generation
from api.schemas import GenerationIn
from db.errors import PolicyNotFound
from db.models import Generation
from db.repositories.generation_json import generation_from_row
from services import generations
from services.generations import (
    Caller,
    NewGeneration,
    QuotaExceeded,
    check_max_tokens,
    queue_generation,
    requests_per_minute,
)


async def submit_generation(
    request: Request,
    principal: Principal,
    body: GenerationIn,
    generation_id: uuid.UUID | None = None,
) -> Generation:
    """Queue the generation `body` asks for; the row as written."""
    return generation_from_row(await _queue(request, principal, body, generation_id))


async def _queue(
    request: Request,
    principal: Principal,
    body: GenerationIn,
    generation_id: uuid.UUID | None,
) -> dict[str, Any]:
    """`services.generations.queue_generation` after the tenant's rate check, all awaited on
    the event loop (the task's send hops to a worker thread once per message, not per
    request); the row as `row_to_json` gives it."""
    caller = Caller(
        principal.require_tenant(), principal.key_id, request.state.request_id, principal.quotas
    )
    new = NewGeneration(body.chat(), body.sampling(), body.policy, body.stream)
    state = request.app.state
    try:
        check_max_tokens(caller.quotas, new)
        await state.rate_limiter.check(caller.tenant_id, requests_per_minute(caller.quotas))
        return await queue_generation(
            connections=state.db_connections,
            factory=state.session_factory,
            caller=caller,
            new=new,
            model=state.model_name,
            sender=state.task_sender,
            generation_id=generation_id,
        )
    except QuotaExceeded as exc:
        raise ApiError(422, "validation_error", str(exc), field=exc.field) from None
    except PolicyNotFound as exc:  # name the bad field, like any other invalid input
        raise ApiError(404, "not_found", str(exc), field="policy") from None


async def submit_and_wait(
    request: Request, principal: Principal, body: GenerationIn, timeout: float
) -> Generation:
    """Queue the generation and wait for it: the row once final, or its state at `timeout`.
    The waiter is registered before the row exists, so the worker's notification cannot come
    too early and the database is read once, when it comes."""
    generation_id = uuid.uuid4()
    state = request.app.state
    async with state.final_notifications.watching(generation_id) as woken:
        await _queue(request, principal, body, generation_id)
        row = await generations.wait_for_final(
            state.session_factory, state.final_notifications, generation_id, timeout, woken=woken
        )
    observe_generation(row)
    return row
