"""Plain factory functions for database tests (they flush, never commit)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.orm import Session

from core.policy import PolicyRules, parse_rules
from db.actors import SYSTEM
from db.models import Generation, Policy, Tenant
from db.repositories.generation_insert import create_generation
from db.repositories.policies import create_policy
from db.repositories.tenants import create_tenant

SERVER_SECRET = "test-server-secret-0123456789"


def threshold_rules(threshold: float = 0.5, **per_category: dict[str, Any]) -> PolicyRules:
    """Threshold-mode rules: `safety` at `threshold`, other categories as given or default."""
    categories = {"safety": {"enabled": True, "threshold": threshold}, **per_category}
    return parse_rules({"mode": "threshold", "categories": categories})


def make_tenant(session: Session, name: str | None = None) -> tuple[Tenant, str]:
    """A tenant with its first admin key; returns the plaintext key too."""
    name = name or f"tenant-{secrets.token_hex(4)}"
    return create_tenant(session=session, name=name, secret=SERVER_SECRET)


def make_policy(
    session: Session,
    tenant: Tenant,
    name: str = "main",
    *,
    threshold: float = 0.5,
    is_default: bool = True,
) -> Policy:
    """A threshold policy with version 1 active."""
    return create_policy(
        session=session,
        tenant_id=tenant.id,
        name=name,
        rules=threshold_rules(threshold),
        actor=SYSTEM,
        is_default=is_default,
    )


def make_generation(session: Session, tenant: Tenant, policy: Policy) -> Generation:
    """A queued generation on the policy's active version."""
    assert policy.active_version_id is not None
    return create_generation(
        session=session,
        tenant_id=tenant.id,
        policy_version_id=policy.active_version_id,
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        params={"max_tokens": 16, "temperature": 0.0},
        request_id="req-1",
    )
