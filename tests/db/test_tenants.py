"""Tenants and API keys on PostgreSQL: creation, lookup, revocation, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.actors import SYSTEM, key_actor
from db.errors import AlreadyExists, ApiKeyNotFound, LastAdminKey
from db.models import ApiKey
from db.repositories.audit import list_entries
from db.repositories.tenants import (
    DEFAULT_QUOTAS,
    create_api_key,
    create_platform_admin_key,
    find_api_key,
    get_tenant_by_name,
    list_api_keys,
    revoke_api_key,
    update_tenant,
)
from db.types import utcnow
from tests.db.factories import SERVER_SECRET, make_tenant

pytestmark = pytest.mark.integration


def test_create_tenant_returns_a_working_admin_key_once(db_session: Session) -> None:
    tenant, plaintext = make_tenant(db_session, "acme")
    assert tenant.active and tenant.quotas == DEFAULT_QUOTAS
    key = find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET)
    assert key is not None
    assert (key.tenant_id, key.role) == (tenant.id, "tenant_admin")
    assert plaintext not in key.secret_hash and key.prefix in plaintext
    assert get_tenant_by_name(session=db_session, name="acme").id == tenant.id


def test_duplicate_tenant_name_is_a_typed_error_and_the_transaction_survives(
    db_session: Session,
) -> None:
    make_tenant(db_session, "acme")
    with pytest.raises(AlreadyExists):
        make_tenant(db_session, "acme")
    other, _ = make_tenant(db_session, "other")  # the session is still usable
    assert other.id is not None


def test_wrong_secret_malformed_key_and_unknown_prefix_are_rejected(db_session: Session) -> None:
    _, plaintext = make_tenant(db_session)
    for presented in (plaintext[:-1] + "x", "garbage", f"rcs_{'0' * 12}_secret"):
        assert find_api_key(session=db_session, presented=presented, secret=SERVER_SECRET) is None
    assert find_api_key(session=db_session, presented=plaintext, secret="wrong-secret") is None


def test_revoked_key_no_longer_authenticates(db_session: Session) -> None:
    tenant, plaintext = make_tenant(db_session)
    key = find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET)
    assert key is not None
    create_api_key(
        session=db_session, secret=SERVER_SECRET, tenant_id=tenant.id, role="tenant_admin", name="2"
    )
    revoke_api_key(session=db_session, tenant_id=tenant.id, key_id=key.id, actor=key_actor(key.id))
    assert find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET) is None
    actions = [e.action for e in list_entries(session=db_session, tenant_id=tenant.id)]
    assert actions[0] == "api_key.revoke"


def test_a_tenant_cannot_revoke_another_tenants_key(db_session: Session) -> None:
    _, plaintext_a = make_tenant(db_session)
    tenant_b, _ = make_tenant(db_session)
    key_a = find_api_key(session=db_session, presented=plaintext_a, secret=SERVER_SECRET)
    assert key_a is not None
    with pytest.raises(ApiKeyNotFound):
        revoke_api_key(session=db_session, tenant_id=tenant_b.id, key_id=key_a.id, actor=SYSTEM)
    assert find_api_key(session=db_session, presented=plaintext_a, secret=SERVER_SECRET)


def test_inactive_tenant_keys_are_rejected(db_session: Session) -> None:
    tenant, plaintext = make_tenant(db_session)
    update_tenant(session=db_session, tenant_id=tenant.id, actor=SYSTEM, active=False)
    assert find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET) is None


def test_last_used_at_is_touched_at_most_once_per_interval(db_session: Session) -> None:
    _, plaintext = make_tenant(db_session)
    now = utcnow()
    key = find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET, now=now)
    assert key is not None and key.last_used_at == now
    later = now + timedelta(seconds=5)
    find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET, now=later)
    assert key.last_used_at == now
    much_later = now + timedelta(minutes=5)
    find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET, now=much_later)
    db_session.expire_all()
    stored = db_session.get(ApiKey, key.id)
    assert stored is not None and stored.last_used_at == much_later


def test_platform_admin_key_has_no_tenant(db_session: Session) -> None:
    key, plaintext = create_platform_admin_key(session=db_session, secret=SERVER_SECRET)
    found = find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET)
    assert found is not None and found.id == key.id
    assert (found.role, found.tenant_id, found.tenant) == ("platform_admin", None, None)
    assert key.id in {k.id for k in list_api_keys(session=db_session, tenant_id=None)}


def test_role_and_tenant_must_agree(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    with pytest.raises(ValueError, match="platform_admin"):
        create_api_key(
            session=db_session,
            secret=SERVER_SECRET,
            tenant_id=tenant.id,
            role="platform_admin",
            name="x",
        )
    with pytest.raises(ValueError, match="unknown role"):
        create_api_key(
            session=db_session, secret=SERVER_SECRET, tenant_id=tenant.id, role="root", name="x"
        )
    # The CHECK constraint holds even for code that bypasses the repository.
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.add(
            ApiKey(tenant_id=None, role="client", name="x", prefix="p" * 12, secret_hash="h")
        )


def test_client_keys_are_listed_per_tenant(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    other, _ = make_tenant(db_session)
    client, plaintext = create_api_key(
        session=db_session, secret=SERVER_SECRET, tenant_id=tenant.id, role="client", name="app"
    )
    assert {k.role for k in list_api_keys(session=db_session, tenant_id=tenant.id)} == {
        "tenant_admin",
        "client",
    }
    assert client.id not in {k.id for k in list_api_keys(session=db_session, tenant_id=other.id)}
    found = find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET)
    assert found is not None and found.role == "client"


def test_the_last_active_admin_key_of_a_tenant_cannot_be_revoked(db_session: Session) -> None:
    tenant, plaintext = make_tenant(db_session)
    first = find_api_key(session=db_session, presented=plaintext, secret=SERVER_SECRET)
    assert first is not None
    client, _ = create_api_key(
        session=db_session, secret=SERVER_SECRET, tenant_id=tenant.id, role="client", name="c"
    )
    with pytest.raises(LastAdminKey):  # a client key does not count as an admin
        revoke_api_key(session=db_session, tenant_id=tenant.id, key_id=first.id, actor=SYSTEM)
    second, _ = create_api_key(
        session=db_session, secret=SERVER_SECRET, tenant_id=tenant.id, role="tenant_admin", name="2"
    )
    revoke_api_key(session=db_session, tenant_id=tenant.id, key_id=first.id, actor=SYSTEM)
    with pytest.raises(LastAdminKey):
        revoke_api_key(session=db_session, tenant_id=tenant.id, key_id=second.id, actor=SYSTEM)
    # revoking an already revoked key stays idempotent; clients can always go
    revoke_api_key(session=db_session, tenant_id=tenant.id, key_id=first.id, actor=SYSTEM)
    revoke_api_key(session=db_session, tenant_id=tenant.id, key_id=client.id, actor=SYSTEM)
