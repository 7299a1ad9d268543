"""The policy editor: create a policy, or save a new version of one, with every error next to
its field; the what-if preview of the edited rules is `api.dashboard.preview`.

Writes go through the same repositories as the API (audited with the signed-in key as actor)
and need the session's CSRF token; a version saved over a newer one is refused (the form carries
the version it was opened on, like `If-Match`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from api.dashboard.auth import TenantWriteDep, Viewer, ViewerDep
from api.dashboard.policy_form import (
    PREVIEW_WINDOWS,
    PolicyForm,
    form_of_rules,
    parse_policy_form,
)
from api.dashboard.render import done, error_page, page, policy_path
from api.deps import SessionDep
from api.schemas import PolicyIn
from core.policy import MODEL_DECISION, POLICY_MODES
from db.errors import AlreadyExists, NotFound, StaleVersion
from db.models import Policy
from db.repositories import policies as repo
from db.repositories import shadow as shadow_repo
from db.repositories.policies import NewVersion, PolicyRef

router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _editor(
    request: Request,
    viewer: Viewer,
    session: Session,
    form: PolicyForm,
    *,
    policy: Policy | None,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    tenant_id = viewer.require_tenant()
    policies = repo.list_policies(session=session, tenant_id=tenant_id)
    default = next((p.name for p in policies if p.is_default), None)
    return page(
        request,
        "policy_edit.html",
        viewer,
        status_code=status_code,
        nav="policies",
        policy=policy,
        form=form,
        error=error,
        modes=POLICY_MODES,
        policies=[p.name for p in policies],
        replay_on=policy.name if policy is not None else default,
        windows=list(PREVIEW_WINDOWS),
    )


@router.get("/new/policy", response_class=HTMLResponse)
def new_policy_form(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    viewer.require_tenant()
    return _editor(request, viewer, session, form_of_rules(MODEL_DECISION), policy=None)


@router.post("/new/policy")
async def create_policy(request: Request, write: TenantWriteDep, session: SessionDep) -> Response:
    viewer = write.viewer
    form = await request.form()  # the form `write` checked the token of (parsed once, cached)
    parsed = parse_policy_form(form, creating=True)
    if not isinstance(parsed.body, PolicyIn) or parsed.rules is None:
        return _editor(request, viewer, session, parsed.form, policy=None, status_code=422)
    try:
        policy = repo.create_policy(
            session=session,
            tenant_id=write.tenant_id,
            name=parsed.body.name,
            rules=parsed.rules,
            actor=write.actor,
            reason=parsed.body.reason,
            is_default=parsed.body.is_default,
        )
    except AlreadyExists as exc:
        session.rollback()
        parsed.form.errors["name"] = str(exc)
        return _editor(request, viewer, session, parsed.form, policy=None, status_code=409)
    session.commit()
    return done(policy_path(policy.name), f"Created {policy.name} (v1 active)")


def _policy(session: Session, viewer: Viewer, name: str) -> Policy | None:
    try:
        return repo.get_policy_by_name(
            session=session, tenant_id=viewer.require_tenant(), name=name
        )
    except NotFound:
        return None


@router.get("/policies/{name}/edit", response_class=HTMLResponse)
def edit_policy_form(
    request: Request, name: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    policy = _policy(session, viewer, name)
    if policy is None:
        return error_page(request, viewer, 404, "Policy not found", f"No policy named {name!r}.")
    active = policy.active_version
    rules = active.rules if active is not None else MODEL_DECISION
    form = form_of_rules(rules, expected_version=active.version if active else None)
    return _editor(request, viewer, session, form, policy=policy)


@router.post("/policies/{name}/edit")
async def save_version(
    request: Request, name: str, write: TenantWriteDep, session: SessionDep
) -> Response:
    """A new immutable version of the policy's rules, activated at once, or set as the policy's
    shadow (`as_shadow`); audited either way."""
    viewer = write.viewer
    form = await request.form()  # the form `write` checked the token of (parsed once, cached)
    policy = _policy(session, viewer, name)
    if policy is None:
        return error_page(request, viewer, 404, "Policy not found", f"No policy named {name!r}.")
    parsed = parse_policy_form(form, creating=False)
    expected_text = str(form.get("expected_version", "")).strip()
    expected = int(expected_text) if expected_text.isdigit() else None
    parsed.form.values["expected_version"] = expected
    if parsed.body is None or parsed.rules is None:
        return _editor(request, viewer, session, parsed.form, policy=policy, status_code=422)
    ref = PolicyRef.of(policy)
    new = NewVersion(parsed.rules, viewer.actor, parsed.body.reason)
    if form.get("as_shadow") == "1":
        shadow = shadow_repo.set_shadow(session=session, ref=ref, new=new)
        session.commit()
        notice = f"Saved v{shadow.version} as the shadow: decided, not enforced"
        return done(policy_path(name, "/shadow"), notice)
    try:
        version = repo.create_version(
            session=session, ref=ref, new=new, expected_active_version=expected
        )
    except StaleVersion:
        session.rollback()
        session.refresh(policy)
        current = policy.active_version.version if policy.active_version else None
        message = (
            f"This policy changed while you edited it: v{current} is now active, not v{expected}. "
            "Your edits are kept below; save again to make them the next version."
        )
        parsed.form.values["expected_version"] = current
        return _editor(
            request, viewer, session, parsed.form, policy=policy, status_code=409, error=message
        )
    session.commit()
    return done(policy_path(name), f"Saved v{version.version}; it is now active")
