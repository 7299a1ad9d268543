"""Native generation API: submit (sync with `wait`, else 202 + Location), read, cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.deps import CLIENT, Principal, SessionDep, TenantMember
from api.errors import ApiError
from api.metrics import observe_generation
from api.openapi import AUTHENTICATED, JSON_BODY, errors, links
from api.schemas import GenerationIn, GenerationOut
from core.queue import GENERATE_TASK
from db.errors import GenerationNotFound, PolicyNotFound
from db.models import FINAL_STATUSES, Generation
from db.repositories import generations as repo
from db.repositories.policies import resolve_active_version
from db.repositories.tenants import get_tenant
from db.session import after_commit

router = APIRouter(prefix="/v1/generations", tags=["generations"], responses=errors(*AUTHENTICATED))
#: Polling backs off from the first to the last delay: quick answers come back quickly, and many
#: waiting clients do not keep the database busy.
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25


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


def submit_generation(
    request: Request,
    session: Session,
    principal: Principal,
    body: GenerationIn,
    *,
    policy: str | None,
) -> Generation:
    """Validate against quotas, resolve the policy, write the queued row, send the task after commit."""
    tenant_id = principal.require_tenant()
    tenant = get_tenant(session=session, tenant_id=tenant_id)
    max_tokens = int(tenant.quotas.get("max_tokens", 1024))
    if body.max_tokens > max_tokens:
        raise ApiError(
            422,
            "validation_error",
            f"max_tokens exceeds this tenant's quota of {max_tokens}",
            field="max_tokens",
        )
    request.app.state.rate_limiter.check(
        tenant_id, int(tenant.quotas.get("requests_per_minute", 600))
    )
    try:
        version = resolve_active_version(session=session, tenant_id=tenant_id, policy_name=policy)
    except PolicyNotFound as exc:  # name the bad field, like any other invalid input
        raise ApiError(404, "not_found", str(exc), field="policy") from None
    row = repo.create_generation(
        session=session,
        tenant_id=tenant_id,
        policy_version_id=version.id,
        model=request.app.state.model_name,
        messages=body.chat(),
        params=body.sampling(),
        api_key_id=principal.key_id,
        request_id=request.state.request_id,
    )
    sender = request.app.state.task_sender
    args = [str(row.id)]
    headers = {"request_id": request.state.request_id}
    after_commit(session, lambda: sender.send(GENERATE_TASK, args, headers=headers))
    session.commit()
    return row


async def wait_for_final(
    factory: sessionmaker[Session], generation_id: uuid.UUID, timeout: float
) -> Generation:
    """Poll the row until it is final or `timeout` passes; returns its latest state."""
    deadline = time.monotonic() + timeout
    delay = POLL_FIRST_SECONDS

    def load() -> Generation:
        with factory() as session:
            found = session.get(Generation, generation_id)
            assert found is not None
            return found

    while True:
        row = await run_in_threadpool(load)
        if row.status in FINAL_STATUSES or time.monotonic() >= deadline:
            observe_generation(row)
            return row
        await asyncio.sleep(delay)
        delay = min(POLL_MAX_SECONDS, delay * 1.5)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": GenerationOut, "description": "Finished within `timeout` (with `wait`)"},
        202: {
            "description": "Queued; poll `Location` (also with `wait`, when not finished in time)",
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
    },
)
async def create_generation(
    body: GenerationIn,
    request: Request,
    response: Response,
    principal: TenantMember,
    session: SessionDep,
) -> GenerationOut:
    row = await run_in_threadpool(
        submit_generation, request, session, principal, body, policy=body.policy
    )
    location = f"/v1/generations/{row.id}"
    response.headers["Location"] = location
    if body.wait:
        row = await wait_for_final(request.app.state.session_factory, row.id, body.timeout)
        if row.status in FINAL_STATUSES:
            response.status_code = status.HTTP_200_OK
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
