"""Policies: active version per policy, version history, a diff of two versions, rollback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.auth import TenantWriteDep, ViewerDep
from api.dashboard.render import done, error_page, page, policy_path
from api.deps import SessionDep
from core.categories import CATEGORIES
from core.policy import CategoryRule
from db.errors import NotFound
from db.models import PolicyVersion
from db.repositories import policies as repo

router = APIRouter(prefix="/dashboard/policies", include_in_schema=False)


@dataclass(frozen=True)
class DiffRow:
    category: str
    field: str
    a: Any
    b: Any

    @property
    def changed(self) -> bool:
        return self.a != self.b


def diff_versions(a: PolicyVersion, b: PolicyVersion) -> list[DiffRow]:
    """Every rule field of every category (and the mode), side by side."""
    rows = [DiffRow("(policy)", "mode", a.mode, b.mode)]
    for category in CATEGORIES:
        ra, rb = a.rules.rule(category), b.rules.rule(category)
        rows.extend(
            DiffRow(category, f, getattr(ra, f), getattr(rb, f)) for f in CategoryRule.model_fields
        )
    return rows


@router.get("", response_class=HTMLResponse)
def policy_list(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    tenant_id = viewer.require_tenant()
    policies = repo.list_policies(session=session, tenant_id=tenant_id)
    counts = {
        p.id: len(repo.list_versions(session=session, tenant_id=tenant_id, policy_id=p.id))
        for p in policies
    }
    return page(request, "policies.html", viewer, policies=policies, counts=counts)


def _pick(versions: list[PolicyVersion], number: int | None) -> PolicyVersion | None:
    return next((v for v in versions if v.version == number), None)


@router.get("/{name}", response_class=HTMLResponse)
def policy_detail(
    request: Request,
    name: str,
    viewer: ViewerDep,
    session: SessionDep,
    a: int | None = None,
    b: int | None = None,
) -> Response:
    """History of one policy and a diff between versions `a` and `b` (default: the active
    version against the one before it)."""
    tenant_id = viewer.require_tenant()
    try:
        policy = repo.get_policy_by_name(session=session, tenant_id=tenant_id, name=name)
    except NotFound:
        return error_page(request, viewer, 404, "Policy not found", f"No policy named {name!r}.")
    versions = repo.list_versions(session=session, tenant_id=tenant_id, policy_id=policy.id)
    active = policy.active_version.version if policy.active_version else None
    b = b if b is not None else active
    if a is None and b is not None:
        older = [v.version for v in versions if v.version < b]
        a = older[-1] if older else b
    va, vb = _pick(versions, a), _pick(versions, b)
    diff = diff_versions(va, vb) if va is not None and vb is not None else []
    return page(
        request,
        "policy.html",
        viewer,
        nav="policies",
        policy=policy,
        versions=list(reversed(versions)),
        active=active,
        a=a,
        b=b,
        diff=diff,
        changed=sum(r.changed for r in diff),
    )


@router.post("/{name}/rollback")
def rollback(
    request: Request,
    name: str,
    write: TenantWriteDep,
    session: SessionDep,
    version: Annotated[int, Form()],
) -> Response:
    """Re-activate an earlier version (audited, with this key as the actor)."""
    try:
        policy = repo.get_policy_by_name(session=session, tenant_id=write.tenant_id, name=name)
        repo.rollback_policy(
            session=session,
            ref=repo.PolicyRef(write.tenant_id, policy.id),
            change=repo.Change(write.actor, "rollback from the dashboard"),
            to_version=version,
        )
    except NotFound as exc:
        session.rollback()
        return error_page(request, write.viewer, 404, "Rollback failed", str(exc))
    session.commit()
    return done(policy_path(name), f"Version {version} is now active")
