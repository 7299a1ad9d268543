"""The audit log: append-only records of who changed what, with the before and after."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from db.models import AuditEntry


def append_entry(
    *,
    session: Session,
    tenant_id: uuid.UUID | None,
    actor: str,
    action: str,
    entity: str,
    entity_id: object | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record one change (`tenant_id` None for platform-level changes); flushes, never commits."""
    entry = AuditEntry(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=None if entity_id is None else str(entity_id),
        before=before,
        after=after,
    )
    session.add(entry)
    session.flush()
    return entry


def _filtered(
    stmt: Select[AuditEntry],
    *,
    entity: str | None,
    entity_id: object | None,
    action: str | None,
    since: datetime | None,
    limit: int,
) -> Select[AuditEntry]:
    if entity is not None:
        stmt = stmt.where(AuditEntry.entity == entity)
    if entity_id is not None:
        stmt = stmt.where(AuditEntry.entity_id == str(entity_id))
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if since is not None:
        stmt = stmt.where(AuditEntry.created_at >= since)
    return stmt.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(limit)


def list_entries(
    *,
    session: Session,
    tenant_id: uuid.UUID | None,
    entity: str | None = None,
    entity_id: object | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """One tenant's entries (`tenant_id` None: platform-level entries only), newest first."""
    where = (
        AuditEntry.tenant_id.is_(None) if tenant_id is None else AuditEntry.tenant_id == tenant_id
    )
    stmt = _filtered(
        select(AuditEntry).where(where),
        entity=entity,
        entity_id=entity_id,
        action=action,
        since=since,
        limit=limit,
    )
    return list(session.scalars(stmt))


def list_all_entries(
    *,
    session: Session,
    entity: str | None = None,
    entity_id: object | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries of every tenant and of the platform, newest first (platform admins only)."""
    stmt = _filtered(
        select(AuditEntry),
        entity=entity,
        entity_id=entity_id,
        action=action,
        since=since,
        limit=limit,
    )
    return list(session.scalars(stmt))
