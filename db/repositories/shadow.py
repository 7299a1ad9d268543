"""A policy's shadow version: decided on every request beside the active one from the same
first-token summary, never enforced; set, cleared and promoted here, each step audited."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.errors import NoShadowVersion
from db.models import Policy, PolicyVersion
from db.repositories.policies import (
    Change,
    NewVersion,
    PolicyRef,
    _add_version,
    _audit,
    _described,
    _lock,
    _locked,
    _version_number,
)


def set_shadow(*, session: Session, ref: PolicyRef, new: NewVersion) -> PolicyVersion:
    """A new version (not activated) that becomes the policy's shadow; audited."""
    policy = _lock(session, ref)
    before = _version_number(session, policy.shadow_version_id)
    version = _add_version(session, policy, new, activate=False)
    policy.shadow_version = version
    _audit(
        policy,
        actor=new.actor,
        action="policy.shadow.set",
        before={"shadow_version": before},
        after={"shadow_version": version.version, **_described(new)},
    )
    return version


def clear_shadow(*, session: Session, ref: PolicyRef, actor: str) -> Policy:
    """Stop deciding the shadow version (a no-op without one); audited when one was set."""
    policy = _lock(session, ref)
    before = _version_number(session, policy.shadow_version_id)
    if before is not None:
        policy.shadow_version = None
        _audit(
            policy,
            actor=actor,
            action="policy.shadow.clear",
            before={"shadow_version": before},
            after={"shadow_version": None},
        )
    return policy


def promote_shadow(*, session: Session, ref: PolicyRef, change: Change) -> Policy:
    """Make the shadow version the active one and clear the shadow, in one audited step;
    `NoShadowVersion` without one, `StaleVersion` when the active version moved."""
    policy, active_before = _locked(session, ref, change.expected_active_version)
    shadow = policy.shadow_version
    if shadow is None:
        raise NoShadowVersion(policy.name)
    policy.active_version, policy.shadow_version = shadow, None
    _audit(
        policy,
        actor=change.actor,
        action="policy.shadow.promote",
        before={"active_version": active_before, "shadow_version": shadow.version},
        after={"active_version": shadow.version, "shadow_version": None, "reason": change.reason},
    )
    return policy
