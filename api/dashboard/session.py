"""Dashboard sign-in and sign-out, and the tenant picker of platform admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.dashboard.auth import (
    ADMIN_ROLES,
    COOKIE_NAME,
    LoginRequired,
    ViewerDep,
    check_csrf,
    clear_session_cookie,
    decode_session,
    new_session,
    set_session_cookie,
)
from api.dashboard.render import page
from api.deps import PLATFORM_ADMIN, SessionDep
from db.repositories.tenants import find_api_key, list_tenants

router = APIRouter(prefix="/dashboard", include_in_schema=False)

REASONS = {
    "expired": "Your session expired. Sign in again.",
    "revoked": "That key was revoked or lost its admin role. Sign in with another key.",
    "signed-out": "You are signed out.",
}


@router.get("")
def home(viewer: ViewerDep) -> Response:
    viewer.require_tenant()
    return RedirectResponse("/dashboard/policies", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, reason: str = "") -> Response:
    return page(request, "login.html", None, notice=REASONS.get(reason), error=None)


@router.post("/login")
def login(request: Request, session: SessionDep, api_key: Annotated[str, Form()] = "") -> Response:
    """Exchange an admin key for a session cookie; the key itself is never stored in it."""
    secret = request.app.state.settings.secret_key
    key = find_api_key(session=session, presented=api_key.strip(), secret=secret)
    if key is None or key.role not in ADMIN_ROLES:
        message = (
            "This key cannot open the dashboard: it needs the tenant_admin or platform_admin role."
            if key is not None
            else "Unknown or revoked API key."
        )
        return page(request, "login.html", None, status_code=401, error=message, notice=None)
    tenant_id = None if key.role == PLATFORM_ADMIN else key.tenant_id
    target = "/dashboard/tenants" if tenant_id is None else "/dashboard/policies"
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, new_session(key.id, tenant_id), secret)
    return response


@router.post("/logout")
def logout(viewer: ViewerDep, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(viewer, csrf)
    response = RedirectResponse("/dashboard/login?reason=signed-out", status_code=303)
    clear_session_cookie(response)
    return response


@router.get("/tenants", response_class=HTMLResponse)
def tenant_picker(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    if not viewer.is_platform_admin:
        return RedirectResponse("/dashboard/policies", status_code=303)
    return page(request, "tenants.html", viewer, tenants=list_tenants(session=session))


@router.post("/tenants")
def pick_tenant(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    tenant_id: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """A platform admin chooses which tenant to view: a new session cookie names it."""
    check_csrf(viewer, csrf)
    if not viewer.is_platform_admin:
        return RedirectResponse("/dashboard/policies", status_code=303)
    try:
        chosen = uuid.UUID(tenant_id)
    except ValueError:
        chosen = None
    known = {t.id for t in list_tenants(session=session) if t.active}
    if chosen not in known:
        return page(
            request,
            "tenants.html",
            viewer,
            status_code=422,
            tenants=list_tenants(session=session),
            error="Pick one of the active tenants.",
        )
    secret = request.app.state.settings.secret_key
    current = decode_session(request.cookies.get(COOKIE_NAME, ""), secret)
    if current is None:
        raise LoginRequired("expired")
    response = RedirectResponse("/dashboard/policies", status_code=303)
    set_session_cookie(response, request, new_session(current.key_id, chosen), secret)
    return response
