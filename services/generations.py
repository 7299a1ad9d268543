"""Generations as a service: queueing one (quota, policy, row, task) and waiting for it to be
final. The native and the OpenAI-compatible routes both call these; the routes keep HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anyio.to_thread import run_sync
from sqlalchemy.orm import Session, sessionmaker

from core.queue import GENERATE_TASK
from core.row_start import RowStart, tenant_share
from db.async_connections import AsyncConnections
from db.models import FINAL_STATUSES, Generation
from db.repositories import generations as repo
from db.repositories.generation_insert import create_generation_under_policy_async
from db.repositories.generation_json import generation_from_row
from db.retry import retry_on_disconnect
from db.session import session_scope
from services.final_notifications import FinalNotifications
from services.tasks import (
    NOT_QUEUED,
    BrokerUnavailable,
    TaskMessage,
    TaskSender,
    send_from_loop,
)


class QuotaExceeded(Exception):
    """A request over one of the tenant's quotas; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class NewGeneration:
    """What a caller asks for, already validated: chat messages and sampling `params` (the
    stored form, `core.sampling.SamplingParams.from_params` reads it)."""

    messages: list[dict[str, str]]
    params: dict[str, Any]
    policy: str | None
    stream: bool


@dataclass(frozen=True)
class Caller:
    """Who submits: the tenant, the key and the request id of the HTTP request, and the
    tenant's quotas as read with the key (the insert confirms both are still so)."""

    tenant_id: uuid.UUID
    api_key_id: uuid.UUID
    request_id: str
    quotas: Mapping[str, Any]


def read_generation(factory: sessionmaker[Session], generation_id: uuid.UUID) -> Generation:
    """A committed generation row, read in a session of its own (detached once returned)."""
    with factory() as session:
        found = session.get(Generation, generation_id)
        assert found is not None, f"generation {generation_id} is committed before it is read"
        return found


def requests_per_minute(quotas: Mapping[str, Any]) -> int:
    """The tenant's quota of submissions per minute (what its rate check counts against)."""
    return int(quotas.get("requests_per_minute", 600))


def check_max_tokens(quotas: Mapping[str, Any], new: NewGeneration) -> None:
    """`QuotaExceeded` when the request asks for more tokens than the tenant's quota."""
    max_tokens = int(quotas.get("max_tokens", 1024))
    if int(new.params["max_tokens"]) > max_tokens:
        raise QuotaExceeded("max_tokens", f"max_tokens exceeds this tenant's quota of {max_tokens}")


async def queue_generation(
    *,
    connections: AsyncConnections,
    factory: sessionmaker[Session],
    caller: Caller,
    new: NewGeneration,
    model: str,
    sender: TaskSender,
    generation_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Check the tenant's token quota (`check_max_tokens`), write the queued row (with
    `generation_id` if given) under the policy's active version (`PolicyNotFound`), one
    statement awaited on the event loop's connection and committed as it returns, then send
    its task. Returns the row as written (`row_to_json`'s shape: `generation_from_row` reads
    it).

    The caller has already counted the request against the tenant's rate (a request over the
    rate writes nothing). The insert confirms the caller's key as it was read (`KeyChanged`
    otherwise, with nothing written), so the key may come from a cache. If the broker refuses the task, the row is made final (`NOT_QUEUED`,
    through `factory`) and `BrokerUnavailable` reaches the caller."""
    check_max_tokens(caller.quotas, new)
    async with connections.connection() as conn:
        row = await create_generation_under_policy_async(
            conn=conn,
            tenant_id=caller.tenant_id,
            key_id=caller.api_key_id,
            quotas=caller.quotas,
            policy_name=new.policy,
            model=model,
            messages=new.messages,
            params=new.params,
            request_id=caller.request_id,
            generation_id=generation_id,
        )
    row_id = row["id"]
    args: list[Any] = [row_id, True] if new.stream else [row_id]
    start = None if new.stream else RowStart(row, tenant_share(caller.quotas)).carried()
    if start is not None:  # the worker runs it without reading it (`core.row_start`)
        args += [False, start]
    message = TaskMessage(GENERATE_TASK, args, row_id, {"request_id": caller.request_id})
    try:
        await send_from_loop(sender, message)
    except BrokerUnavailable:
        await run_sync(_mark_not_queued, factory, uuid.UUID(row_id))
        raise
    return row


def _mark_not_queued(factory: sessionmaker[Session], generation_id: uuid.UUID) -> None:
    """Make final a row whose task the broker refused: nothing waits for a task never queued."""
    with session_scope(factory) as session:
        repo.mark_failed(session=session, generation_id=generation_id, error=NOT_QUEUED)


async def wait_for_final(
    factory: sessionmaker[Session],
    waiter: FinalNotifications,
    generation_id: uuid.UUID,
    timeout: float,
    *,
    woken: asyncio.Event | None = None,
) -> Generation:
    """The row once final (woken by the worker's notification), or its state at `timeout`.
    `woken`: the event of a waiter registered before the row was written (no read before the
    first notification)."""

    def load() -> Generation:
        # The row is committed and will finish: wait a database restart out, up to the timeout.
        return retry_on_disconnect(lambda: read_generation(factory, generation_id), seconds=timeout)

    async def read() -> Generation:
        carried = waiter.take_row(generation_id)  # final as committed: no read needed
        return generation_from_row(carried) if carried is not None else await run_sync(load)

    return await waiter.wait_until(
        generation_id,
        read,
        lambda r: r.status in FINAL_STATUSES,
        timeout,
        woken=woken,
    )
