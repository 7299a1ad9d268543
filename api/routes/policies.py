"""Named, versioned refusal policies of the caller's tenant (tenant admins only)."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Header, Response, status
from sqlalchemy.orm import Session

from api.deps import Principal, SessionDep, TenantAdmin
from api.errors import ApiError
from api.openapi import AUTHENTICATED, JSON_BODY, errors, links
from api.schemas import (
    PolicyIn,
    PolicyOut,
    PolicyUpdate,
    PromoteIn,
    RollbackIn,
    RulesIn,
    VersionOut,
)
from core.policy import to_json
from db.errors import PolicyVersionNotFound
from db.models import Policy, PolicyVersion
from db.repositories import policies as repo
from db.repositories import shadow as shadow_repo
from db.repositories.policies import Change, NewVersion, PolicyRef

router = APIRouter(prefix="/v1/policies", tags=["policies"], responses=errors(*AUTHENTICATED))
#: The operations a created policy links to: link name -> (method, path) of a route below.
POLICY_OPERATIONS = {
    "GetPolicy": ("get", "/v1/policies/{name}"),
    "UpdatePolicy": ("put", "/v1/policies/{name}"),
    "ListVersions": ("get", "/v1/policies/{name}/versions"),
    "Rollback": ("post", "/v1/policies/{name}/rollback"),
    "MakeDefault": ("post", "/v1/policies/{name}/default"),
}


def version_out(version: PolicyVersion) -> VersionOut:
    return VersionOut(
        version=version.version,
        mode=version.mode,
        rules=to_json(version.rules),
        created_by=version.created_by,
        reason=version.reason,
        created_at=version.created_at,
    )


def policy_out(policy: Policy) -> PolicyOut:
    active, shadow = policy.active_version, policy.shadow_version
    return PolicyOut(
        id=policy.id,
        name=policy.name,
        is_default=policy.is_default,
        active_version=version_out(active) if active is not None else None,
        shadow_version=version_out(shadow) if shadow is not None else None,
        created_at=policy.created_at,
    )


def _with_etag(response: Response, policy: Policy) -> None:
    if policy.active_version is not None:
        response.headers["ETag"] = f'"{policy.active_version.version}"'


def _committed(session: Session, response: Response, policy: Policy) -> PolicyOut:
    """Commit the change and answer the policy as it now is, with its ETag."""
    session.commit()
    session.refresh(policy)
    _with_etag(response, policy)
    return policy_out(policy)


def _named(principal: Principal, session: Session, name: str) -> Policy:
    """The caller's tenant's policy called `name`; `PolicyNotFound` (404) otherwise."""
    return repo.get_policy_by_name(session=session, tenant_id=principal.require_tenant(), name=name)


def _if_match(value: str | None) -> int | None:
    """The version number an `If-Match` header names (`"3"`, `W/"3"` or `3`), if any."""
    if value is None or value.strip() == "*":
        return None
    raw = value.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise ApiError(
            400, "invalid_header", "If-Match must be a policy version number", field="If-Match"
        )
    return int(raw)


@router.get("")
def list_policies(principal: TenantAdmin, session: SessionDep) -> list[PolicyOut]:
    tenant_id = principal.require_tenant()
    return [policy_out(p) for p in repo.list_policies(session=session, tenant_id=tenant_id)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={201: links("name", POLICY_OPERATIONS), **errors(*JSON_BODY, 409)},
)
def create_policy(
    body: PolicyIn, principal: TenantAdmin, session: SessionDep, response: Response
) -> PolicyOut:
    policy = repo.create_policy(
        session=session,
        tenant_id=principal.require_tenant(),
        name=body.name,
        rules=body.rules(),
        actor=principal.actor,
        reason=body.reason,
        is_default=body.is_default,
    )
    session.commit()
    response.headers["Location"] = f"/v1/policies/{policy.name}"
    _with_etag(response, policy)
    return policy_out(policy)


@router.get("/{name}", responses=errors(404))
def get_policy(
    name: str, principal: TenantAdmin, session: SessionDep, response: Response
) -> PolicyOut:
    policy = _named(principal, session, name)
    _with_etag(response, policy)
    return policy_out(policy)


@router.put("/{name}", responses=errors(*JSON_BODY, 404, 409))
def update_policy(
    name: str,
    body: PolicyUpdate,
    principal: TenantAdmin,
    session: SessionDep,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> PolicyOut:
    """A new immutable version, activated at once; a stale `If-Match` is 409, never a lost update."""
    expected = _if_match(if_match)
    rules = body.rules()
    policy = _named(principal, session, name)
    ref = PolicyRef.of(policy)
    new = NewVersion(rules, principal.actor, body.reason)
    repo.create_version(session=session, ref=ref, new=new, expected_active_version=expected)
    if body.is_default:
        repo.mark_default(session=session, ref=ref, actor=principal.actor)
    return _committed(session, response, policy)


@router.get("/{name}/versions", responses=errors(404))
def list_versions(name: str, principal: TenantAdmin, session: SessionDep) -> list[VersionOut]:
    policy = _named(principal, session, name)
    return [
        version_out(v)
        for v in repo.list_versions(
            session=session, tenant_id=policy.tenant_id, policy_id=policy.id
        )
    ]


@router.post("/{name}/rollback", responses=errors(*JSON_BODY, 404, 409))
def rollback(
    name: str, body: RollbackIn, principal: TenantAdmin, session: SessionDep, response: Response
) -> PolicyOut:
    """Re-activate an earlier version (audited); the versions themselves never change."""
    policy = _named(principal, session, name)
    try:
        policy = repo.rollback_policy(
            session=session,
            ref=PolicyRef.of(policy),
            change=Change(principal.actor, body.reason),
            to_version=body.version,
        )
    except PolicyVersionNotFound:  # the policy exists; the body names a version it never had
        message = f"policy {name!r} has no version {body.version}"
        raise ApiError(422, "validation_error", message, field="version") from None
    return _committed(session, response, policy)


class PolicyStep(Protocol):
    """An audited change that needs only the policy and who makes it (`repo.mark_default`,
    `shadow_repo.clear_shadow`)."""

    def __call__(self, *, session: Session, ref: PolicyRef, actor: str) -> Policy: ...


def _stepped(step: PolicyStep, name: str, principal: Principal, session: Session) -> PolicyOut:
    """Take `step` on the caller's policy `name`, commit, and answer the policy as it now is."""
    policy = _named(principal, session, name)
    policy = step(session=session, ref=PolicyRef.of(policy), actor=principal.actor)
    session.commit()
    return policy_out(policy)


@router.post("/{name}/default", responses=errors(404))
def make_default(name: str, principal: TenantAdmin, session: SessionDep) -> PolicyOut:
    return _stepped(repo.mark_default, name, principal, session)


@router.put("/{name}/shadow", responses=errors(*JSON_BODY, 404))
def set_shadow(
    name: str, body: RulesIn, principal: TenantAdmin, session: SessionDep, response: Response
) -> PolicyOut:
    """A new version decided on every request beside the active one, never enforced (audited);
    it replaces any shadow the policy had."""
    rules = body.rules()
    policy = _named(principal, session, name)
    new = NewVersion(rules, principal.actor, body.reason)
    shadow_repo.set_shadow(session=session, ref=PolicyRef.of(policy), new=new)
    return _committed(session, response, policy)


@router.delete("/{name}/shadow", responses=errors(404))
def clear_shadow(name: str, principal: TenantAdmin, session: SessionDep) -> PolicyOut:
    """Stop deciding the shadow version (audited); its statistics stay."""
    return _stepped(shadow_repo.clear_shadow, name, principal, session)


@router.post("/{name}/shadow/promote", responses=errors(*JSON_BODY, 404, 409))
def promote_shadow(
    name: str,
    principal: TenantAdmin,
    session: SessionDep,
    response: Response,
    body: PromoteIn | None = None,
    if_match: Annotated[str | None, Header()] = None,
) -> PolicyOut:
    """Make the shadow version the active one in one step (audited); 409 without a shadow, or
    when `If-Match` names a stale active version."""
    expected = _if_match(if_match)
    policy = _named(principal, session, name)
    policy = shadow_repo.promote_shadow(
        session=session,
        ref=PolicyRef.of(policy),
        change=Change(principal.actor, body.reason if body is not None else None, expected),
    )
    return _committed(session, response, policy)
