"""Policies and their immutable versions, always scoped to one tenant.

Every change makes a new `PolicyVersion`; activation and rollback only move the policy's
`active_version_id`; a shadow version (decided on every request, never enforced) is a version
the policy's `shadow_version_id` points at, set, cleared or promoted to active. Changes lock the policy row (``SELECT ... FOR UPDATE`` on PostgreSQL) so
concurrent writers get consecutive version numbers, and every change writes an audit entry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from core.policy import PolicyRules, to_json
from db.errors import (
    AlreadyExists,
    PolicyNotFound,
    PolicyVersionNotFound,
    StaleVersion,
)
from db.models import Policy, PolicyVersion
from db.repositories.audit import append_entry
from db.repositories.common import add_unique, get_or_raise, one_or_raise


@dataclass(frozen=True)
class PolicyRef:
    """Which policy a change is for, and whose: the repository only finds it within
    `tenant_id` (another tenant's policy is `PolicyNotFound`)."""

    tenant_id: uuid.UUID
    policy_id: uuid.UUID

    @classmethod
    def of(cls, policy: Policy) -> PolicyRef:
        """A policy already found within its tenant (say by the caller's tenant and name)."""
        return cls(policy.tenant_id, policy.id)


@dataclass(frozen=True)
class NewVersion:
    """What a new version carries besides its number: its rules, who made it and why."""

    rules: PolicyRules
    actor: str
    reason: str | None = None


@dataclass(frozen=True)
class Change:
    """Who moves a policy's active or shadow version and why; with `expected_active_version`,
    only if the active version is still the one the caller read (else `StaleVersion`)."""

    actor: str
    reason: str | None = None
    expected_active_version: int | None = None


def _version_number(session: Session, version_id: uuid.UUID | None) -> int | None:
    if version_id is None:
        return None
    return session.scalar(select(PolicyVersion.version).where(PolicyVersion.id == version_id))


def _audit(
    policy: Policy,
    *,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> None:
    """Write the change made to `policy` (flushed first) and its audit entry, in its session."""
    session = Session.object_session(policy)
    assert session is not None, "an audited policy belongs to a session"
    session.flush()
    append_entry(
        session=session,
        tenant_id=policy.tenant_id,
        actor=actor,
        action=action,
        entity="policy",
        entity_id=policy.id,
        before=before,
        after=after,
    )


def get_policy(
    *, session: Session, tenant_id: uuid.UUID, policy_id: uuid.UUID, for_update: bool = False
) -> Policy:
    """A tenant's policy by id; another tenant's policy is `PolicyNotFound` too."""
    stmt = select(Policy).where(Policy.id == policy_id, Policy.tenant_id == tenant_id)
    if for_update:
        stmt = stmt.with_for_update()
    return one_or_raise(session, stmt, PolicyNotFound(policy_id))


def _lock(session: Session, ref: PolicyRef) -> Policy:
    """The referenced policy, locked for a change (`PolicyNotFound` outside its tenant)."""
    return get_policy(
        session=session, tenant_id=ref.tenant_id, policy_id=ref.policy_id, for_update=True
    )


def _locked(
    session: Session, ref: PolicyRef, expected_active: int | None
) -> tuple[Policy, int | None]:
    """The policy, locked for a change, and its active version number; `StaleVersion` when
    `expected_active` is given and differs."""
    policy = _lock(session, ref)
    active = _version_number(session, policy.active_version_id)
    if expected_active is not None and expected_active != active:
        raise StaleVersion(expected_active, active)
    return policy, active


def _policy_named(tenant_id: uuid.UUID, name: str | None) -> Select[Policy]:
    """The tenant's policy by name, or its default when `name` is None."""
    which = Policy.is_default.is_(True) if name is None else Policy.name == name
    return select(Policy).where(Policy.tenant_id == tenant_id, which)


def get_policy_by_name(*, session: Session, tenant_id: uuid.UUID, name: str) -> Policy:
    """A tenant's policy by name, or `PolicyNotFound`."""
    return one_or_raise(session, _policy_named(tenant_id, name), PolicyNotFound(name))


def get_default_policy(*, session: Session, tenant_id: uuid.UUID) -> Policy:
    """The tenant's default policy, or `PolicyNotFound`."""
    return one_or_raise(session, _policy_named(tenant_id, None), PolicyNotFound("default"))


def list_policies(*, session: Session, tenant_id: uuid.UUID) -> list[Policy]:
    """A tenant's policies, by name."""
    stmt = select(Policy).where(Policy.tenant_id == tenant_id).order_by(Policy.name)
    return list(session.scalars(stmt))


def create_policy(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    name: str,
    rules: PolicyRules,
    actor: str,
    reason: str | None = None,
    is_default: bool = False,
) -> Policy:
    """A new policy with version 1 active; `AlreadyExists` if the tenant has that name."""
    policy = Policy(tenant_id=tenant_id, name=name, is_default=False)
    add_unique(session, policy, lambda: AlreadyExists("policy", name))
    _add_version(session, policy, NewVersion(rules, actor, reason), activate=True)
    _audit(
        policy,
        actor=actor,
        action="policy.create",
        before=None,
        after={"name": name, "active_version": 1, "mode": rules.mode, "rules": to_json(rules)},
    )
    if is_default:
        mark_default(session=session, ref=PolicyRef.of(policy), actor=actor)
    return policy


def _add_version(
    session: Session, policy: Policy, new: NewVersion, *, activate: bool
) -> PolicyVersion:
    """The policy's next version (number = max + 1), made its active one when `activate`."""
    latest = session.scalar(
        select(func.max(PolicyVersion.version)).where(PolicyVersion.policy_id == policy.id)
    )
    version = PolicyVersion(
        policy_id=policy.id,
        version=(latest or 0) + 1,
        rules=new.rules,
        created_by=new.actor,
        reason=new.reason,
    )
    session.add(version)
    session.flush()
    if activate:
        policy.active_version = version
        session.flush()
    return version


def create_version(
    *,
    session: Session,
    ref: PolicyRef,
    new: NewVersion,
    activate: bool = True,
    expected_active_version: int | None = None,
) -> PolicyVersion:
    """A new immutable version (number = max + 1), activated unless `activate=False`.

    With `expected_active_version`, raises `StaleVersion` if the policy's active version number
    differs (someone changed it since the caller read it).
    """
    policy, active_before = _locked(session, ref, expected_active_version)
    version = _add_version(session, policy, new, activate=activate)
    _audit(
        policy,
        actor=new.actor,
        action="policy.version.create",
        before={"active_version": active_before},
        after={
            "version": version.version,
            "active_version": version.version if activate else active_before,
            **_described(new),
        },
    )
    return version


def _described(new: NewVersion) -> dict[str, Any]:
    """A new version's content as its audit entry records it."""
    return {"mode": new.rules.mode, "rules": to_json(new.rules), "reason": new.reason}


def get_version(
    *, session: Session, tenant_id: uuid.UUID, policy_id: uuid.UUID, version: int
) -> PolicyVersion:
    """Version number `version` of a tenant's policy, or `PolicyVersionNotFound`."""
    stmt = _tenant_versions(tenant_id).where(
        Policy.id == policy_id, PolicyVersion.version == version
    )
    return one_or_raise(session, stmt, PolicyVersionNotFound(f"{policy_id}@{version}"))


def _tenant_versions(tenant_id: uuid.UUID) -> Select[PolicyVersion]:
    """Every policy version of one tenant."""
    return (
        select(PolicyVersion)
        .join(Policy, PolicyVersion.policy_id == Policy.id)
        .where(Policy.tenant_id == tenant_id)
    )


def get_version_by_id(
    *, session: Session, tenant_id: uuid.UUID, version_id: uuid.UUID
) -> PolicyVersion:
    """A tenant's policy version by id, or `PolicyVersionNotFound`."""
    stmt = _tenant_versions(tenant_id).where(PolicyVersion.id == version_id)
    return one_or_raise(session, stmt, PolicyVersionNotFound(version_id))


def load_version(*, session: Session, version_id: uuid.UUID) -> PolicyVersion:
    """A policy version by id with no tenant filter: for workers, whose rows name the version."""
    return get_or_raise(session, PolicyVersion, version_id, PolicyVersionNotFound)


def list_versions(
    *, session: Session, tenant_id: uuid.UUID, policy_id: uuid.UUID
) -> list[PolicyVersion]:
    """Every version of a tenant's policy, oldest first."""
    get_policy(session=session, tenant_id=tenant_id, policy_id=policy_id)
    stmt = (
        select(PolicyVersion)
        .where(PolicyVersion.policy_id == policy_id)
        .order_by(PolicyVersion.version)
    )
    return list(session.scalars(stmt))


def activate_version(*, session: Session, ref: PolicyRef, version: int, change: Change) -> Policy:
    """Make an existing version the active one (apply a proposal, or roll back); audited."""
    policy, active_before = _locked(session, ref, change.expected_active_version)
    policy.active_version = get_version(
        session=session, tenant_id=ref.tenant_id, policy_id=ref.policy_id, version=version
    )
    _audit(
        policy,
        actor=change.actor,
        action="policy.activate",
        before={"active_version": active_before},
        after={"active_version": version, "reason": change.reason},
    )
    return policy


def rollback_policy(
    *, session: Session, ref: PolicyRef, change: Change, to_version: int | None = None
) -> Policy:
    """Re-activate `to_version`, or by default the newest version older than the active one."""
    policy = _lock(session, ref)
    if to_version is None:
        active = _version_number(session, policy.active_version_id)
        older = select(func.max(PolicyVersion.version)).where(PolicyVersion.policy_id == policy.id)
        if active is not None:
            older = older.where(PolicyVersion.version < active)
        to_version = session.scalar(older)
        if to_version is None:
            raise PolicyVersionNotFound(f"{policy.id}: no version before {active}")
    change = replace(change, reason=change.reason or "rollback")
    return activate_version(session=session, ref=ref, version=to_version, change=change)


def mark_default(*, session: Session, ref: PolicyRef, actor: str) -> Policy:
    """Make this policy the tenant's default (and no other); audited."""
    policy = _lock(session, ref)
    tenant_id = policy.tenant_id
    if policy.is_default:
        return policy
    previous = session.scalar(
        select(Policy.id).where(Policy.tenant_id == tenant_id, Policy.is_default.is_(True))
    )
    # Clear the old default first: a partial unique index allows one default per tenant.
    session.execute(
        update(Policy)
        .where(Policy.tenant_id == tenant_id, Policy.is_default.is_(True))
        .values(is_default=False),
        execution_options={"synchronize_session": "fetch"},
    )
    policy.is_default = True
    _audit(
        policy,
        actor=actor,
        action="policy.default",
        before={"default_policy_id": None if previous is None else str(previous)},
        after={"default_policy_id": str(policy.id)},
    )
    return policy


def all_active_policies(*, session: Session) -> list[Policy]:
    """Every tenant's policies that have an active version (for the auto-tuner, a system job)."""
    stmt = select(Policy).where(Policy.active_version_id.is_not(None)).order_by(Policy.id)
    return list(session.scalars(stmt))
