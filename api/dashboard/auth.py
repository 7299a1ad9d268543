"""Dashboard sign-in: an admin API key exchanged for a signed, HttpOnly, SameSite=Strict cookie.

The cookie holds the key id, the chosen tenant, a random nonce and the issue time, signed with
HMAC-SHA256 under a key derived from `settings.secret_key`. Every request re-reads the key, so a
revoked key (or a deactivated tenant) signs the session out at once. The CSRF token of a session
is an HMAC of its nonce: forms carry it, state-changing routes compare it in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request, Response
from sqlalchemy.orm import Session

from api.deps import PLATFORM_ADMIN, TENANT_ADMIN, SessionDep
from db.models import ApiKey, Tenant

COOKIE_NAME = "rcs_dashboard"
MAX_AGE_SECONDS = 8 * 3600
ADMIN_ROLES = (PLATFORM_ADMIN, TENANT_ADMIN)


class LoginRequired(Exception):
    """No valid dashboard session: the page redirects to the sign-in form."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class TenantRequired(Exception):
    """A platform admin has not picked a tenant yet."""


class CsrfFailed(Exception):
    """A state-changing form arrived without this session's CSRF token."""


@dataclass(frozen=True)
class DashboardSession:
    key_id: uuid.UUID
    tenant_id: uuid.UUID | None
    nonce: str
    issued_at: int


def _signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"rcs-dashboard-session-v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_session(session: DashboardSession, secret: str) -> str:
    payload = json.dumps(
        {
            "k": str(session.key_id),
            "t": None if session.tenant_id is None else str(session.tenant_id),
            "n": session.nonce,
            "i": session.issued_at,
        },
        separators=(",", ":"),
    ).encode()
    body = _b64(payload)
    sig = hmac.new(_signing_key(secret), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(sig)}"


def decode_session(value: str, secret: str, *, now: float | None = None) -> DashboardSession | None:
    """The session a cookie value holds, or None if it is forged, malformed or expired."""
    body, _, sig = value.partition(".")
    try:
        expected = hmac.new(_signing_key(secret), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(sig)):
            return None
        data = json.loads(_unb64(body))
        session = DashboardSession(
            key_id=uuid.UUID(data["k"]),
            tenant_id=None if data["t"] is None else uuid.UUID(data["t"]),
            nonce=str(data["n"]),
            issued_at=int(data["i"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if (now or time.time()) - session.issued_at > MAX_AGE_SECONDS:
        return None
    return session


def new_session(key_id: uuid.UUID, tenant_id: uuid.UUID | None) -> DashboardSession:
    return DashboardSession(key_id, tenant_id, secrets.token_urlsafe(16), int(time.time()))


def csrf_token(session: DashboardSession, secret: str) -> str:
    message = f"csrf|{session.key_id}|{session.nonce}".encode()
    return _b64(hmac.new(_signing_key(secret), message, hashlib.sha256).digest())


def set_session_cookie(
    response: Response, request: Request, session: DashboardSession, secret: str
) -> None:
    response.set_cookie(
        COOKIE_NAME,
        encode_session(session, secret),
        max_age=MAX_AGE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/dashboard",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/dashboard", httponly=True, samesite="strict")


@dataclass(frozen=True)
class Viewer:
    """The signed-in admin: key, role, the tenant being viewed, and the session's CSRF token."""

    key_id: uuid.UUID
    key_name: str
    role: str
    tenant_id: uuid.UUID | None
    tenant_name: str | None
    session: DashboardSession
    csrf: str

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"

    @property
    def is_platform_admin(self) -> bool:
        return self.role == PLATFORM_ADMIN

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            raise TenantRequired()
        return self.tenant_id


def live_admin_key(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    """The key if it still exists, is not revoked, is an admin key and its tenant is active."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or key.role not in ADMIN_ROLES:
        return None
    if key.tenant is not None and not key.tenant.active:
        return None
    return key


def signed_in(request: Request, session: Session) -> Viewer:
    """The viewer of a request with a valid session cookie, else `LoginRequired`."""
    secret = request.app.state.settings.secret_key
    raw = request.cookies.get(COOKIE_NAME)
    data = decode_session(raw, secret) if raw else None
    if data is None:
        raise LoginRequired("expired" if raw else "")
    key = live_admin_key(session, data.key_id)
    if key is None:
        raise LoginRequired("revoked")
    tenant_id = key.tenant_id if key.role == TENANT_ADMIN else data.tenant_id
    tenant = session.get(Tenant, tenant_id) if tenant_id is not None else None
    if tenant_id is not None and (tenant is None or not tenant.active):
        tenant_id, tenant = None, None
    return Viewer(
        key_id=key.id,
        key_name=key.name,
        role=key.role,
        tenant_id=tenant_id,
        tenant_name=tenant.name if tenant else None,
        session=data,
        csrf=csrf_token(data, secret),
    )


def current_viewer(request: Request, session: SessionDep) -> Viewer:
    return signed_in(request, session)


def check_csrf(viewer: Viewer, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(viewer.csrf, presented):
        raise CsrfFailed()


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


@dataclass(frozen=True)
class TenantWrite:
    """A state-changing form of the viewed tenant: its CSRF token checked, its tenant resolved."""

    viewer: Viewer
    tenant_id: uuid.UUID

    @property
    def actor(self) -> str:
        return self.viewer.actor


def checked_write(viewer: ViewerDep, csrf: Annotated[str, Form()] = "") -> TenantWrite:
    """`CsrfFailed` without this session's token, then `TenantRequired` without a tenant."""
    check_csrf(viewer, csrf)
    return TenantWrite(viewer, viewer.require_tenant())


TenantWriteDep = Annotated[TenantWrite, Depends(checked_write)]
