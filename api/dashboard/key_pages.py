"""API keys of the viewed tenant: list, create (the secret shown once) and revoke.

The new key's secret is in the answer to the POST only (never in a URL, a redirect or a later
page; `Cache-Control: no-store`). Creation is validated with the API's own `KeyIn`; both writes
need the session's CSRF token and are audited with the signed-in key as actor.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.dashboard.auth import TenantWriteDep, Viewer, ViewerDep
from api.dashboard.render import done, page
from api.deps import CLIENT, TENANT_ADMIN, SessionDep
from api.errors import field_path
from api.routes.admin import KeyIn
from db.errors import LastAdminKey, NotFound
from db.repositories import tenants as repo

router = APIRouter(prefix="/dashboard/keys", include_in_schema=False)
ROLES = (CLIENT, TENANT_ADMIN)


def _keys_page(
    request: Request,
    viewer: Viewer,
    session: Session,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    context.setdefault("errors", {})
    context.setdefault("values", {"name": "", "role": CLIENT})
    keys = repo.list_api_keys(session=session, tenant_id=viewer.require_tenant())
    response = page(
        request,
        "keys.html",
        viewer,
        status_code=status_code,
        keys=list(reversed(keys)),
        roles=ROLES,
        **context,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("", response_class=HTMLResponse)
def key_list(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    return _keys_page(request, viewer, session)


@router.post("")
def create_key(
    request: Request,
    write: TenantWriteDep,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = CLIENT,
) -> Response:
    viewer = write.viewer
    values = {"name": name, "role": role}
    try:
        body = KeyIn.model_validate({"name": name.strip(), "role": role})
    except ValidationError as exc:
        errors = {
            field_path(e["loc"]): str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors(include_url=False)
        }
        return _keys_page(request, viewer, session, status_code=422, errors=errors, values=values)
    key, secret = repo.create_api_key(
        session=session,
        secret=request.app.state.settings.secret_key,
        tenant_id=write.tenant_id,
        role=body.role,
        name=body.name,
        actor=write.actor,
    )
    session.commit()
    return _keys_page(request, viewer, session, status_code=201, created=key, secret=secret)


@router.post("/{key_id}/revoke")
def revoke_key(
    request: Request, key_id: str, write: TenantWriteDep, session: SessionDep
) -> Response:
    try:
        key = repo.revoke_api_key(
            session=session, tenant_id=write.tenant_id, key_id=uuid.UUID(key_id), actor=write.actor
        )
    except (ValueError, NotFound):
        session.rollback()
        return _keys_page(request, write.viewer, session, status_code=404, error="No such key.")
    except LastAdminKey:
        session.rollback()
        message = "This is the tenant's last admin key: create another admin key first."
        return _keys_page(request, write.viewer, session, status_code=409, error=message)
    session.commit()
    return done("/dashboard/keys", f"Revoked {key.name} ({key.prefix})")
