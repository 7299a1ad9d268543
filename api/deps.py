"""Request dependencies: one database session per request, the caller's key, role checks.

The tenant always comes from the key, never from the URL or the body.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import anyio
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.key_cache import KeyCache
from core.api_keys import hash_key
from db.repositories.tenants import authenticate_key_async

PLATFORM_ADMIN = "platform_admin"
TENANT_ADMIN: Final = "tenant_admin"
CLIENT: Final = "client"


def _end(session: Session, *, failed: bool) -> None:
    """Commit what the route left (roll back if it raised), and return the connection."""
    try:
        if failed:
            session.rollback()
        else:
            session.commit()
    finally:
        session.close()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request, for the routes that take one (a generation's submission and
    the key lookup run on the event loop's own connections instead: `db.async_connections`).
    Writing routes commit explicitly (`session.commit()`) before they send a task
    (`services.tasks.send_after_commit`); anything left uncommitted when the route ends is
    committed here, or rolled back if it raised.

    Async so that opening the session (no I/O yet) costs no hop to a worker thread; ending one
    that holds a transaction talks to the database, so that part runs in one. A session whose
    route committed or never used it holds no connection and closes in place: a hop costs the
    process about as much CPU as a short statement."""
    session: Session = request.app.state.session_factory()
    failed = True
    try:
        yield session
        failed = False
    finally:
        if not session.in_transaction():  # committed or unused: no connection, no I/O left
            session.close()
        else:  # Shielded: a cancelled request (the client left) still returns its connection.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_end, session, failed=failed)


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: its key, role and (except platform admins) tenant."""

    key_id: uuid.UUID
    role: str
    tenant_id: uuid.UUID | None
    #: The tenant's quotas, read with the key (empty for platform admins).
    quotas: Mapping[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            raise ApiError(403, "forbidden", "this route needs a tenant key")
        return self.tenant_id


#: The OpenAPI security scheme; missing or non-Bearer credentials are our 401, not FastAPI's.
bearer_scheme = HTTPBearer(
    auto_error=False, bearerFormat="rcs_<prefix>_<secret>", description="an API key"
)


def client_address(request: Request) -> str:
    """The caller's address as the server saw it (behind a proxy: uvicorn's --proxy-headers)."""
    return request.client.host if request.client else "unknown"


def retrieved(task: asyncio.Future[None]) -> None:
    """A done callback: the task's error counts as seen (its awaiter may have left)."""
    if not task.cancelled():
        task.exception()


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The caller's key, checked in constant time; revoked or unknown keys are 401. An address
    with too many failed authentications in the last minute is 429, whatever the key.

    The address's failures (Redis) are read while the key is looked up (PostgreSQL), both
    awaited on the event loop (`db.async_connections`: no worker thread): two round trips in the
    time of one. A blocked address still gets no answer about its key."""
    return await _authenticate(request, credentials, cached=False)


async def cached_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """`current_principal`, taken from the process's key cache when it holds the key
    (`api.key_cache`). Only for a route whose write confirms the key as it was read (a
    generation's insert): a key changed meanwhile makes that write raise `KeyChanged`, and the
    route reads it again (`confirmed_principal`)."""
    return await _authenticate(request, credentials, cached=True)


async def confirmed_principal(request: Request) -> Principal:
    """The caller's key read again from the database, after a write found it changed since it
    was read (`KeyChanged`): 401 if it is no longer live, else as it is now."""
    return await _authenticate(request, await bearer_scheme(request), cached=False)


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None, *, cached: bool
) -> Principal:
    settings = request.app.state.settings
    limiter = request.app.state.rate_limiter
    address = client_address(request)
    blocked = asyncio.ensure_future(
        limiter.check_authentication(address, settings.auth_failures_per_minute)
    )
    blocked.add_done_callback(retrieved)  # a request cancelled meanwhile leaves no warning
    if credentials is None:  # not a guess at a key: not counted
        await blocked
        raise ApiError(401, "unauthenticated", "missing Authorization: Bearer <api key>")
    cache: KeyCache = request.app.state.key_cache
    digest = hash_key(credentials.credentials, server_secret=settings.secret_key)
    key = cache.get(digest) if cached else None
    if key is None:
        try:
            async with request.app.state.db_connections.connection() as conn:
                key = await authenticate_key_async(
                    conn=conn, presented=credentials.credentials, secret=settings.secret_key
                )
        except Exception:
            await blocked  # a blocked address is 429 whatever else went wrong
            raise
        if key is None:
            cache.drop(digest)
        else:
            cache.put(digest, key)
    await blocked
    if key is None:  # unknown, revoked, or its tenant deactivated
        await limiter.record_failed_authentication(address)
        raise ApiError(401, "unauthenticated", "invalid or revoked API key")
    return Principal(key_id=key.key_id, role=key.role, tenant_id=key.tenant_id, quotas=key.quotas)


def require_roles(
    *roles: str, authenticate: Callable[..., Coroutine[None, None, Principal]] = current_principal
) -> Callable[[Principal], Coroutine[None, None, Principal]]:
    # Async: a check without I/O runs on the event loop, not in a worker thread. The dependency
    # is a default, not `Annotated`: these annotations are strings, resolved in the module's
    # globals, where `authenticate` is not.
    async def check(principal: Principal = Depends(authenticate)) -> Principal:  # noqa: B008
        if principal.role not in roles:
            raise ApiError(
                403, "forbidden", f"this route needs one of the roles: {', '.join(roles)}"
            )
        return principal

    return check


PlatformAdmin = Annotated[Principal, Depends(require_roles(PLATFORM_ADMIN))]
TenantAdmin = Annotated[Principal, Depends(require_roles(TENANT_ADMIN))]
TenantMember = Annotated[Principal, Depends(require_roles(TENANT_ADMIN, CLIENT))]
#: A tenant member on a route whose write confirms the key (`cached_principal`).
SubmittingMember = Annotated[
    Principal, Depends(require_roles(TENANT_ADMIN, CLIENT, authenticate=cached_principal))
]
