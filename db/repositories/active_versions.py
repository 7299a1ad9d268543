"""The version a new generation runs under: a policy's active (and shadow) version, by name or
the tenant's default, read by the API (awaited on the event loop) and by the worker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.errors import NoActiveVersion, PolicyNotFound
from db.models import PolicyVersion
from db.repositories.common import driver_sql


@dataclass(frozen=True)
class ActiveVersion:
    """What a new generation needs of its policy: the active version and the shadow version."""

    version_id: uuid.UUID
    shadow_version_id: uuid.UUID | None


#: On every generation's path: constant statements (the ORM's joined entity loading was an
#: eighth of the API's time under load). A tenant has at most one policy per name and one
#: default (unique indexes).
_ACTIVE_BY_NAME = text(
    """
    SELECT name, active_version_id, shadow_version_id FROM policies
    WHERE tenant_id = :tenant_id AND name = :name
    """
)
_ACTIVE_DEFAULT = text(
    """
    SELECT name, active_version_id, shadow_version_id FROM policies
    WHERE tenant_id = :tenant_id AND is_default
    """
)

_ACTIVE_BY_NAME_SQL = driver_sql(_ACTIVE_BY_NAME)
_ACTIVE_DEFAULT_SQL = driver_sql(_ACTIVE_DEFAULT)


def resolve_active_version_ids(
    *, session: Session, tenant_id: uuid.UUID, policy_name: str | None = None
) -> ActiveVersion:
    """The active (and shadow) version of the named policy, or of the tenant's default when no
    name is given. Raises `PolicyNotFound`, or `NoActiveVersion` if the policy has none."""
    if policy_name is None:
        found = session.execute(_ACTIVE_DEFAULT, {"tenant_id": tenant_id}).one_or_none()
    else:
        params = {"tenant_id": tenant_id, "name": policy_name}
        found = session.execute(_ACTIVE_BY_NAME, params).one_or_none()
    return _active(found, policy_name)


def _active(found: Any, policy_name: str | None) -> ActiveVersion:
    if found is None:
        raise PolicyNotFound(policy_name or "default")
    if found.active_version_id is None:
        raise NoActiveVersion(f"policy {found.name!r} has no active version")
    return ActiveVersion(found.active_version_id, found.shadow_version_id)


async def resolve_active_version_ids_async(
    *, conn: psycopg.AsyncConnection, tenant_id: uuid.UUID, policy_name: str | None = None
) -> ActiveVersion:
    """`resolve_active_version_ids` on a connection of the event loop."""
    params: dict[str, Any] = {"tenant_id": tenant_id, "name": policy_name}
    statement = _ACTIVE_DEFAULT_SQL if policy_name is None else _ACTIVE_BY_NAME_SQL
    async with conn.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(statement, params)
        return _active(await cursor.fetchone(), policy_name)


def resolve_active_version(
    *, session: Session, tenant_id: uuid.UUID, policy_name: str | None = None
) -> PolicyVersion:
    """The active version of the named policy, or of the tenant's default when no name is given
    (`resolve_active_version_ids`), as its row."""
    ids = resolve_active_version_ids(session=session, tenant_id=tenant_id, policy_name=policy_name)
    version = session.get(PolicyVersion, ids.version_id)
    assert version is not None, "an active version is a foreign key"
    return version
