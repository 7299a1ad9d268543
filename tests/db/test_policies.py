"""Policies on PostgreSQL: immutable versions, activation, rollback, default, tenant scoping."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from core.policy import DEFAULT_POLICY_NAME, MODEL_DECISION, bias_vector, parse_rules
from db.actors import SYSTEM, calibration_actor
from db.errors import (
    AlreadyExists,
    NoActiveVersion,
    PolicyNotFound,
    PolicyVersionNotFound,
    StaleVersion,
)
from db.models import Policy
from db.repositories.active_versions import resolve_active_version
from db.repositories.audit import list_entries
from db.repositories.policies import (
    Change,
    NewVersion,
    PolicyRef,
    activate_version,
    create_policy,
    create_version,
    get_default_policy,
    get_policy,
    get_policy_by_name,
    get_version_by_id,
    list_policies,
    list_versions,
    load_version,
    mark_default,
    rollback_policy,
)
from tests.db.factories import make_policy, make_tenant, threshold_rules

pytestmark = pytest.mark.integration


def active_number(policy: Policy) -> int:
    assert policy.active_version is not None
    return policy.active_version.version


def test_create_policy_makes_version_one_active(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    versions = list_versions(session=db_session, tenant_id=tenant.id, policy_id=policy.id)
    assert [v.version for v in versions] == [1]
    assert policy.active_version_id == versions[0].id
    assert versions[0].created_by == SYSTEM and versions[0].mode == "threshold"
    assert resolve_active_version(session=db_session, tenant_id=tenant.id).id == versions[0].id


def test_new_versions_number_up_and_old_ones_stay_unchanged(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant, threshold=0.5)
    v2 = create_version(
        session=db_session,
        ref=PolicyRef(tenant.id, policy.id),
        new=NewVersion(threshold_rules(0.7), SYSTEM, "stricter"),
    )
    v3 = create_version(
        session=db_session,
        ref=PolicyRef(tenant.id, policy.id),
        new=NewVersion(parse_rules({"mode": "bias", "categories": {}}), SYSTEM),
        activate=False,
    )
    assert (v2.version, v3.version) == (2, 3)
    assert policy.active_version_id == v2.id  # v3 is a proposal, not active
    versions = list_versions(session=db_session, tenant_id=tenant.id, policy_id=policy.id)
    assert versions[0].rules == threshold_rules(0.5)
    assert versions[1].reason == "stricter"


def test_activate_and_rollback_move_only_the_pointer(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    for threshold in (0.6, 0.7):
        create_version(
            session=db_session,
            ref=PolicyRef(tenant.id, policy.id),
            new=NewVersion(threshold_rules(threshold), SYSTEM),
        )
    assert active_number(policy) == 3
    ref, change = PolicyRef(tenant.id, policy.id), Change(SYSTEM)
    rollback_policy(session=db_session, ref=ref, change=change)
    assert active_number(policy) == 2
    rollback_policy(session=db_session, ref=ref, change=change, to_version=1)
    assert active_number(policy) == 1
    with pytest.raises(PolicyVersionNotFound):
        rollback_policy(session=db_session, ref=ref, change=change)
    activate_version(session=db_session, ref=ref, version=3, change=change)
    assert active_number(policy) == 3
    assert len(list_versions(session=db_session, tenant_id=tenant.id, policy_id=policy.id)) == 3
    actions = [
        e.action for e in list_entries(session=db_session, tenant_id=tenant.id, entity_id=policy.id)
    ]
    assert actions.count("policy.activate") == 3


def test_stale_expected_version_is_refused(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    create_version(
        session=db_session,
        ref=PolicyRef(tenant.id, policy.id),
        new=NewVersion(threshold_rules(0.6), SYSTEM),
        expected_active_version=1,
    )
    with pytest.raises(StaleVersion) as info:
        create_version(
            session=db_session,
            ref=PolicyRef(tenant.id, policy.id),
            new=NewVersion(threshold_rules(0.9), "auto-tuner"),
            expected_active_version=1,
        )
    assert (info.value.expected, info.value.actual) == (1, 2)


def test_every_tenant_starts_with_the_models_own_decision_as_its_default(
    db_session: Session,
) -> None:
    tenant, _ = make_tenant(db_session)
    default = get_default_policy(session=db_session, tenant_id=tenant.id)
    assert default.name == DEFAULT_POLICY_NAME
    version = resolve_active_version(session=db_session, tenant_id=tenant.id)
    assert parse_rules(version.rules) == MODEL_DECISION
    assert (bias_vector(MODEL_DECISION) == 0).all()  # no bias, and bias mode: no threshold


def test_one_default_policy_per_tenant(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    first = get_default_policy(session=db_session, tenant_id=tenant.id)
    kids = make_policy(db_session, tenant, "kids-app", is_default=False)
    assert get_default_policy(session=db_session, tenant_id=tenant.id).id == first.id
    mark_default(session=db_session, ref=PolicyRef(tenant.id, kids.id), actor=SYSTEM)
    assert get_default_policy(session=db_session, tenant_id=tenant.id).id == kids.id
    assert not first.is_default
    assert [p.name for p in list_policies(session=db_session, tenant_id=tenant.id)] == [
        "default",
        "kids-app",
    ]
    version = resolve_active_version(session=db_session, tenant_id=tenant.id, policy_name="default")
    assert version.id == first.active_version_id


def test_policy_names_are_unique_per_tenant_only(db_session: Session) -> None:
    tenant_a, _ = make_tenant(db_session)
    tenant_b, _ = make_tenant(db_session)
    make_policy(db_session, tenant_a, "strict")
    make_policy(db_session, tenant_b, "strict")
    with pytest.raises(AlreadyExists):
        make_policy(db_session, tenant_a, "strict", is_default=False)


def test_tenant_b_cannot_reach_tenant_a_policies(db_session: Session) -> None:
    tenant_a, _ = make_tenant(db_session)
    tenant_b, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant_a)
    assert policy.active_version_id is not None
    with pytest.raises(PolicyNotFound):
        get_policy(session=db_session, tenant_id=tenant_b.id, policy_id=policy.id)
    with pytest.raises(PolicyNotFound):
        get_policy_by_name(session=db_session, tenant_id=tenant_b.id, name=policy.name)
    assert get_default_policy(session=db_session, tenant_id=tenant_b.id).id != policy.id
    with pytest.raises(PolicyNotFound):
        list_versions(session=db_session, tenant_id=tenant_b.id, policy_id=policy.id)
    with pytest.raises(PolicyNotFound):
        create_version(
            session=db_session,
            ref=PolicyRef(tenant_b.id, policy.id),
            new=NewVersion(threshold_rules(), SYSTEM),
        )
    with pytest.raises(PolicyNotFound):
        mark_default(session=db_session, ref=PolicyRef(tenant_b.id, policy.id), actor=SYSTEM)
    with pytest.raises(PolicyVersionNotFound):
        get_version_by_id(
            session=db_session, tenant_id=tenant_b.id, version_id=policy.active_version_id
        )
    assert [p.name for p in list_policies(session=db_session, tenant_id=tenant_b.id)] == [
        DEFAULT_POLICY_NAME
    ]
    # Workers load versions by id without a tenant: their rows already name the version.
    assert load_version(session=db_session, version_id=policy.active_version_id).policy_id == (
        policy.id
    )


def test_policy_without_active_version_cannot_serve(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    policy.active_version_id = None
    db_session.flush()
    db_session.expire(policy)
    with pytest.raises(NoActiveVersion):
        resolve_active_version(session=db_session, tenant_id=tenant.id)


def test_calibration_versions_record_their_origin(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = create_policy(
        session=db_session,
        tenant_id=tenant.id,
        name="p",
        rules=threshold_rules(),
        actor=SYSTEM,
    )
    run_id = uuid.uuid4()
    version = create_version(
        session=db_session,
        ref=PolicyRef(tenant.id, policy.id),
        new=NewVersion(threshold_rules(0.42), calibration_actor(run_id)),
        activate=False,
    )
    assert version.created_by == f"calibration:{run_id}"
    with pytest.raises(ValueError, match="mode"):  # no version can hold an unknown mode
        parse_rules({"mode": "magic", "categories": {}})


def test_a_version_stores_and_returns_the_typed_rules(db_session: Session) -> None:
    """One column of truth: the rules come back as `PolicyRules`, the mode is theirs."""
    tenant, _ = make_tenant(db_session)
    rules = threshold_rules(0.25, humanizing={"enabled": False, "refusal_message": "no."})
    policy = make_policy(db_session, tenant)
    version = create_version(
        session=db_session, ref=PolicyRef(tenant.id, policy.id), new=NewVersion(rules, SYSTEM)
    )
    db_session.expire_all()
    again = load_version(session=db_session, version_id=version.id)
    assert again.rules == rules and again.mode == "threshold"
    assert again.rules.rule("humanizing").refusal_message == "no."
