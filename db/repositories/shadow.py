"""A policy's shadow version: decided on every request beside the active one from the same
first-token summary, never enforced; set, cleared and promoted here, each step audited."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.policy import PolicyRules, to_json
from db.errors import NoShadowVersion
from db.models import Policy, PolicyVersion
from db.repositories.policies import _add_version, _audit, _locked, _version_number, get_policy


def set_shadow(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy_id: uuid.UUID,
    rules: PolicyRules,
    actor: str,
    reason: str | None = None,
) -> PolicyVersion:
    """A new version (not activated) that becomes the policy's shadow; audited."""
    policy = get_policy(session=session, tenant_id=tenant_id, policy_id=policy_id, for_update=True)
    before = _version_number(session, policy.shadow_version_id)
    version = _add_version(session, policy, rules=rules, actor=actor, reason=reason, activate=False)
    policy.shadow_version = version
    session.flush()
    _audit(
        session,
        policy,
        actor=actor,
        action="policy.shadow.set",
        before={"shadow_version": before},
        after={
            "shadow_version": version.version,
            "mode": rules.mode,
            "rules": to_json(rules),
            "reason": reason,
        },
    )
    return version


def clear_shadow(
    *, session: Session, tenant_id: uuid.UUID, policy_id: uuid.UUID, actor: str
) -> Policy:
    """Stop deciding the shadow version (a no-op without one); audited when one was set."""
    policy = get_policy(session=session, tenant_id=tenant_id, policy_id=policy_id, for_update=True)
    before = _version_number(session, policy.shadow_version_id)
    if before is None:
        return policy
    policy.shadow_version = None
    session.flush()
    _audit(
        session,
        policy,
        actor=actor,
        action="policy.shadow.clear",
        before={"shadow_version": before},
        after={"shadow_version": None},
    )
    return policy


def promote_shadow(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy_id: uuid.UUID,
    actor: str,
    reason: str | None = None,
    expected_active_version: int | None = None,
) -> Policy:
    """Make the shadow version the active one and clear the shadow, in one audited step;
    `NoShadowVersion` without one, `StaleVersion` when the active version moved."""
    policy, active_before = _locked(session, tenant_id, policy_id, expected_active_version)
    shadow = policy.shadow_version
    if shadow is None:
        raise NoShadowVersion(policy.name)
    policy.active_version = shadow
    policy.shadow_version = None
    session.flush()
    _audit(
        session,
        policy,
        actor=actor,
        action="policy.shadow.promote",
        before={"active_version": active_before, "shadow_version": shadow.version},
        after={"active_version": shadow.version, "shadow_version": None, "reason": reason},
    )
    return policy
