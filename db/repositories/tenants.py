"""Tenants and their API keys. Plaintext keys are returned once, at creation, never stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.api_keys import MalformedKey, generate_key, parse_prefix, verify_key
from core.policy import DEFAULT_POLICY_NAME, MODEL_DECISION
from db.actors import SYSTEM
from db.errors import AlreadyExists, ApiKeyNotFound, LastAdminKey, TenantNotFound
from db.models import ROLES, ApiKey, Tenant
from db.repositories.audit import append_entry
from db.repositories.common import add_unique, expire_cached, get_or_raise, one_or_raise
from db.repositories.policies import create_policy
from db.types import utcnow


def _audit(
    session: Session,
    action: str,
    tenant_id: uuid.UUID | None,
    entity_id: uuid.UUID,
    actor: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """An audit entry of a tenant or key change; the entity is the action's first word."""
    append_entry(
        session=session,
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        entity=action.split(".", 1)[0],
        entity_id=entity_id,
        before=before,
        after=after,
    )


DEFAULT_QUOTAS: dict[str, int] = {"requests_per_minute": 600, "max_tokens": 1024}
#: `last_used_at` is written at most this often per key, so auth is not a write per request.
TOUCH_INTERVAL = timedelta(seconds=60)


def create_tenant(
    *,
    session: Session,
    name: str,
    secret: str,
    quotas: dict[str, Any] | None = None,
    actor: str = SYSTEM,
    key_name: str = "admin",
) -> tuple[Tenant, str]:
    """A new tenant, its first `tenant_admin` key and its default policy (the model's own
    decision, editable like any other); returns the plaintext key (shown once).

    Raises `AlreadyExists` if the name is taken. `secret` is the server secret (settings).
    """
    tenant = Tenant(name=name, active=True, quotas={**DEFAULT_QUOTAS, **(quotas or {})})
    add_unique(session, tenant, lambda: AlreadyExists("tenant", name))
    _audit(
        session,
        "tenant.create",
        tenant.id,
        tenant.id,
        actor,
        after={"name": name, "quotas": tenant.quotas},
    )
    _, plaintext = create_api_key(
        session=session,
        secret=secret,
        tenant_id=tenant.id,
        role="tenant_admin",
        name=key_name,
        actor=actor,
    )
    create_policy(
        session=session,
        tenant_id=tenant.id,
        name=DEFAULT_POLICY_NAME,
        rules=MODEL_DECISION,
        actor=actor,
        reason="created with the tenant: the model's own decision",
        is_default=True,
    )
    return tenant, plaintext


def get_tenant(*, session: Session, tenant_id: uuid.UUID) -> Tenant:
    """The tenant with this id, or `TenantNotFound`."""
    return get_or_raise(session, Tenant, tenant_id, TenantNotFound)


def get_tenant_by_name(*, session: Session, name: str) -> Tenant:
    """The tenant with this name, or `TenantNotFound`."""
    stmt = select(Tenant).where(Tenant.name == name)
    return one_or_raise(session, stmt, TenantNotFound(name))


def list_tenants(*, session: Session) -> list[Tenant]:
    """Every tenant, by name."""
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))


def update_tenant(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    actor: str,
    active: bool | None = None,
    quotas: dict[str, Any] | None = None,
) -> Tenant:
    """Activate/deactivate a tenant or merge new quota values; audited."""
    tenant = get_tenant(session=session, tenant_id=tenant_id)
    before = {"active": tenant.active, "quotas": dict(tenant.quotas)}
    if active is not None:
        tenant.active = active
    if quotas is not None:
        tenant.quotas = {**tenant.quotas, **quotas}
    session.flush()
    after = {"active": tenant.active, "quotas": dict(tenant.quotas)}
    _audit(session, "tenant.update", tenant.id, tenant.id, actor, before=before, after=after)
    return tenant


def create_api_key(
    *,
    session: Session,
    secret: str,
    tenant_id: uuid.UUID | None,
    role: str,
    name: str,
    actor: str = SYSTEM,
) -> tuple[ApiKey, str]:
    """A new key for a tenant (or a platform admin key with `tenant_id=None`) and its plaintext."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    if (role == "platform_admin") != (tenant_id is None):
        raise ValueError("platform_admin keys have no tenant; every other key has one")
    generated = generate_key(server_secret=secret)
    key = ApiKey(
        tenant_id=tenant_id,
        role=role,
        name=name,
        prefix=generated.prefix,
        secret_hash=generated.secret_hash,
    )
    session.add(key)
    session.flush()
    _audit(
        session,
        "api_key.create",
        tenant_id,
        key.id,
        actor,
        after={"role": role, "name": name, "prefix": key.prefix},
    )
    return key, generated.plaintext


def create_platform_admin_key(
    *, session: Session, secret: str, name: str = "platform-admin", actor: str = SYSTEM
) -> tuple[ApiKey, str]:
    """A platform admin key (no tenant) and its plaintext (shown once)."""
    return create_api_key(
        session=session,
        secret=secret,
        tenant_id=None,
        role="platform_admin",
        name=name,
        actor=actor,
    )


@dataclass(frozen=True)
class LiveKey:
    """A live key as authentication reads it: who it is, and its tenant's quotas."""

    key_id: uuid.UUID
    role: str
    tenant_id: uuid.UUID | None
    quotas: dict[str, Any]


#: On every request's path: constant statements (the ORM's entity loading and flush were a
#: seventh of the API's time under load), in psycopg's parameter style: the API awaits them on a
#: connection of its own (`authenticate_key_async`), and the synchronous path hands them to the
#: same driver as they are.
_KEY_BY_PREFIX = """
    SELECT k.id, k.role, k.tenant_id, k.secret_hash, k.revoked_at, k.last_used_at,
           t.active, t.quotas
    FROM api_keys AS k LEFT JOIN tenants AS t ON t.id = k.tenant_id
    WHERE k.prefix = %(prefix)s
"""
_TOUCH_KEY = "UPDATE api_keys SET last_used_at = %(now)s WHERE id = %(id)s"


def _prefix(presented: str) -> str | None:
    try:
        return parse_prefix(presented)
    except MalformedKey:
        return None


def _live(found: Any, presented: str, secret: str) -> LiveKey | None:
    """The key row `found` by the presented key's prefix, if the presented key is it and it is
    live (not revoked, its tenant active)."""
    if found is None or not verify_key(presented, found.secret_hash, server_secret=secret):
        return None
    if found.revoked_at is not None or (found.tenant_id is not None and not found.active):
        return None
    return LiveKey(found.id, found.role, found.tenant_id, dict(found.quotas or {}))


def _touch_due(found: Any, now: datetime) -> bool:
    return found.last_used_at is None or now - found.last_used_at >= TOUCH_INTERVAL


def authenticate_key(
    *, session: Session, presented: str, secret: str, now: datetime | None = None
) -> LiveKey | None:
    """The live key matching a presented plaintext, or None.

    Looks up by prefix, compares digests in constant time, rejects revoked keys and keys of
    inactive tenants, and touches `last_used_at` (at most once per `TOUCH_INTERVAL`).
    """
    prefix = _prefix(presented)
    if prefix is None:
        return None
    connection = session.connection()
    found = connection.exec_driver_sql(_KEY_BY_PREFIX, {"prefix": prefix}).one_or_none()
    live = _live(found, presented, secret)
    now = now or utcnow()
    if live is not None and _touch_due(found, now):
        connection.exec_driver_sql(_TOUCH_KEY, {"now": now, "id": live.key_id})
        expire_cached(session, ApiKey, live.key_id)
    return live


async def authenticate_key_async(
    *, conn: psycopg.AsyncConnection, presented: str, secret: str, now: datetime | None = None
) -> LiveKey | None:
    """`authenticate_key` on an autocommit connection of the event loop
    (`db.async_connections`)."""
    prefix = _prefix(presented)
    if prefix is None:
        return None
    async with conn.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(_KEY_BY_PREFIX, {"prefix": prefix})
        found = await cursor.fetchone()
        live = _live(found, presented, secret)
        now = now or utcnow()
        if live is not None and _touch_due(found, now):
            await cursor.execute(_TOUCH_KEY, {"now": now, "id": live.key_id})
    return live


def find_api_key(
    *, session: Session, presented: str, secret: str, now: datetime | None = None
) -> ApiKey | None:
    """The live key matching a presented plaintext, as its row (`authenticate_key`), or None."""
    live = authenticate_key(session=session, presented=presented, secret=secret, now=now)
    return None if live is None else session.get(ApiKey, live.key_id)


def list_api_keys(*, session: Session, tenant_id: uuid.UUID | None) -> list[ApiKey]:
    """A tenant's keys (`tenant_id` None: platform admin keys), oldest first."""
    where = ApiKey.tenant_id.is_(None) if tenant_id is None else ApiKey.tenant_id == tenant_id
    return list(session.scalars(select(ApiKey).where(where).order_by(ApiKey.created_at)))


def revoke_api_key(
    *, session: Session, tenant_id: uuid.UUID | None, key_id: uuid.UUID, actor: str
) -> ApiKey:
    """Revoke a key of this tenant (`tenant_id` None: a platform key); idempotent, audited.

    A tenant's last active `tenant_admin` key cannot be revoked (`LastAdminKey`): nobody could
    manage the tenant any more. The tenant row is locked first, so two concurrent revocations of
    its last two admin keys cannot both pass the check.
    """
    if tenant_id is not None:
        session.scalar(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    where = ApiKey.tenant_id.is_(None) if tenant_id is None else ApiKey.tenant_id == tenant_id
    stmt = select(ApiKey).where(ApiKey.id == key_id, where)
    key = one_or_raise(session, stmt, ApiKeyNotFound(key_id))
    if key.revoked_at is None and key.role == "tenant_admin" and key.tenant_id is not None:
        other_admins = session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.tenant_id == key.tenant_id,
                ApiKey.role == "tenant_admin",
                ApiKey.revoked_at.is_(None),
                ApiKey.id != key.id,
            )
        )
        if not other_admins:
            raise LastAdminKey(key.id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        _audit(
            session,
            "api_key.revoke",
            key.tenant_id,
            key.id,
            actor,
            after={"revoked_at": key.revoked_at.isoformat()},
        )
    return key
