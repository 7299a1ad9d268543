"""The audit log on PostgreSQL: entries are written by changes and filtered per tenant."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from db.actors import SYSTEM, key_actor
from db.repositories.audit import ALL_TENANTS, append_entry, list_entries
from db.repositories.policies import NewVersion, PolicyRef, create_version
from db.repositories.tenants import create_platform_admin_key
from tests.db.factories import SERVER_SECRET, make_policy, make_tenant, threshold_rules

pytestmark = pytest.mark.integration


def test_policy_changes_leave_before_and_after(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    actor = key_actor(policy.id)
    create_version(
        session=db_session,
        ref=PolicyRef(tenant.id, policy.id),
        new=NewVersion(threshold_rules(0.8), actor, "too permissive"),
    )
    [entry] = list_entries(session=db_session, tenant_id=tenant.id, action="policy.version.create")
    assert entry.actor == actor and entry.entity == "policy" and entry.entity_id == str(policy.id)
    assert entry.before == {"active_version": 1}
    assert entry.after is not None and entry.after["active_version"] == 2
    assert entry.after["reason"] == "too permissive"
    actions = [e.action for e in list_entries(session=db_session, tenant_id=tenant.id)]
    assert actions[0] == "policy.version.create"  # newest first
    assert {"tenant.create", "api_key.create", "policy.create", "policy.default"} <= set(actions)


def test_entries_are_filtered_per_tenant(db_session: Session) -> None:
    tenant_a, _ = make_tenant(db_session)
    tenant_b, _ = make_tenant(db_session)
    append_entry(
        session=db_session,
        tenant_id=tenant_a.id,
        actor=SYSTEM,
        action="custom.thing",
        entity="widget",
        entity_id=42,
        after={"x": 1},
    )
    assert list_entries(session=db_session, tenant_id=tenant_b.id, action="custom.thing") == []
    [entry] = list_entries(session=db_session, tenant_id=tenant_a.id, entity="widget")
    assert entry.entity_id == "42" and entry.created_at.tzinfo is not None
    assert list_entries(session=db_session, tenant_id=tenant_a.id, entity_id=42) == [entry]
    everything = list_entries(
        session=db_session, tenant_id=ALL_TENANTS, action="custom.thing", limit=1000
    )
    assert entry in everything


def test_platform_level_entries_have_no_tenant(db_session: Session) -> None:
    key, _ = create_platform_admin_key(session=db_session, secret=SERVER_SECRET)
    platform = list_entries(session=db_session, tenant_id=None, entity_id=key.id)
    assert [e.action for e in platform] == ["api_key.create"]
