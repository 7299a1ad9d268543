"""Request dependencies: one database session per request, the caller's key, role checks.

The tenant always comes from the key, never from the URL or the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from api.errors import ApiError
from db.repositories.tenants import find_api_key

PLATFORM_ADMIN = "platform_admin"
TENANT_ADMIN = "tenant_admin"
CLIENT = "client"


def get_session(request: Request) -> Iterator[Session]:
    """One session per request. Writing routes commit explicitly (`session.commit()`), so tasks
    registered with `after_commit` are sent before the response; anything left uncommitted when
    the route ends is committed here, or rolled back if it raised."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: its key, role and (except platform admins) tenant."""

    key_id: uuid.UUID
    role: str
    tenant_id: uuid.UUID | None

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            raise ApiError(403, "forbidden", "this route needs a tenant key")
        return self.tenant_id


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "unauthenticated", "missing Authorization: Bearer <api key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "Authorization must be 'Bearer <api key>'")
    return token.strip()


def current_principal(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """The caller's key, checked in constant time; revoked or unknown keys are 401."""
    presented = _bearer(authorization)
    key = find_api_key(
        session=session, presented=presented, secret=request.app.state.settings.secret_key
    )
    if key is None:
        raise ApiError(401, "unauthenticated", "invalid or revoked API key")
    if key.tenant is not None and not key.tenant.active:
        raise ApiError(403, "forbidden", "tenant is deactivated")
    return Principal(key_id=key.id, role=key.role, tenant_id=key.tenant_id)


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            raise ApiError(
                403, "forbidden", f"this route needs one of the roles: {', '.join(roles)}"
            )
        return principal

    return check


PlatformAdmin = Annotated[Principal, Depends(require_roles(PLATFORM_ADMIN))]
TenantAdmin = Annotated[Principal, Depends(require_roles(TENANT_ADMIN))]
TenantMember = Annotated[Principal, Depends(require_roles(TENANT_ADMIN, CLIENT))]
