"""The API's side of submitting and waiting for generations, shared by the native and the
OpenAI-compatible routes: who is calling, and the services' errors as HTTP errors."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request

from api.deps import Principal, confirmed_principal
from api.errors import ApiError
from api.metrics import observe_generation
from api.schemas import GenerationIn
from db.errors import KeyChanged, PolicyNotFound
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

#: Reads of the key one submission may make when writes keep finding it changed.
KEY_READS = 3


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
    request); the row as `row_to_json` gives it.

    The key may come from the process's cache (`api.key_cache`); the insert confirms it. When
    it changed meanwhile, nothing was written: the key is read again (401 if no longer live)
    and the request runs under it as it is now, its rate not counted twice."""
    new = NewGeneration(body.chat(), body.sampling(), body.policy, body.stream)
    state = request.app.state
    count_rate = True
    for _ in range(KEY_READS):
        caller = Caller(
            principal.require_tenant(), principal.key_id, request.state.request_id, principal.quotas
        )
        try:
            check_max_tokens(caller.quotas, new)
            if count_rate:
                await state.rate_limiter.check(caller.tenant_id, requests_per_minute(caller.quotas))
                count_rate = False
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
        except KeyChanged:
            principal = await confirmed_principal(request)
    raise ApiError(
        503,
        "unavailable",
        "the tenant's settings kept changing during the request; retry it",
        headers={"Retry-After": "1"},
    )


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
