"""The audit log: append-only records of who changed what, with the before and after."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
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


class _AllTenants(enum.Enum):
    ALL = "all"


#: `list_entries(tenant_id=ALL_TENANTS)`: every tenant's entries and the platform's.
ALL_TENANTS = _AllTenants.ALL


def list_entries(
    *,
    session: Session,
    tenant_id: uuid.UUID | _AllTenants | None,
    entity: str | None = None,
    entity_id: object | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """One tenant's entries (`tenant_id` None: platform-level entries only; `ALL_TENANTS`:
    everything, for platform admins), newest first."""
    stmt = select(AuditEntry)
    if tenant_id is None:
        stmt = stmt.where(AuditEntry.tenant_id.is_(None))
    elif tenant_id is not ALL_TENANTS:
        stmt = stmt.where(AuditEntry.tenant_id == tenant_id)
    if entity is not None:
        stmt = stmt.where(AuditEntry.entity == entity)
    if entity_id is not None:
        stmt = stmt.where(AuditEntry.entity_id == str(entity_id))
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if since is not None:
        stmt = stmt.where(AuditEntry.created_at >= since)
    stmt = stmt.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(limit)
    return list(session.scalars(stmt))
