"""New generation rows: the API's insert, `queued`, under the policy version it runs with (read
in the same statement), as a session's row or awaited on the event loop's connection. The
awaited insert also confirms, in the same statement, that the caller's key is as it was read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

import psycopg
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session, make_transient_to_detached

from db.errors import KeyChanged
from db.models import Generation
from db.repositories.active_versions import (
    resolve_active_version_ids,
    resolve_active_version_ids_async,
)
from db.repositories.common import driver_sql
from db.repositories.generation_json import generation_from_json
from db.types import utcnow

#: On every request's path: a constant statement (the ORM's unit-of-work flush of one new row
#: was a tenth of the API's time under load).
_INSERT = text(
    """
    INSERT INTO generations AS g (id, tenant_id, policy_version_id, shadow_version_id,
        api_key_id, model, messages, params, status, request_id, created_at)
    VALUES (:id, :tenant_id, :policy_version_id, :shadow_version_id, :api_key_id, :model,
        CAST(:messages AS jsonb), CAST(:params AS jsonb), 'queued', :request_id, :created_at)
    RETURNING row_to_json(g)::text
    """
)


#: The same row with the policy's active (and shadow) version read in the one statement: the
#: request's policy costs no statement of its own. No row when the policy has no active version.
_INSERT_UNDER_POLICY = """
    INSERT INTO generations AS g (id, tenant_id, policy_version_id, shadow_version_id,
        api_key_id, model, messages, params, status, request_id, created_at)
    SELECT :id, :tenant_id, p.active_version_id, p.shadow_version_id, :api_key_id, :model,
        CAST(:messages AS jsonb), CAST(:params AS jsonb), 'queued', :request_id, :created_at
    FROM policies AS p
    WHERE p.tenant_id = :tenant_id AND p.active_version_id IS NOT NULL AND {which}
    RETURNING row_to_json(g)::text
"""
_INSERT_UNDER_NAMED = text(_INSERT_UNDER_POLICY.format(which="p.name = :name"))
_INSERT_UNDER_DEFAULT = text(_INSERT_UNDER_POLICY.format(which="p.is_default"))

#: The key as its caller read it (`api.key_cache`): not revoked, its tenant active, its quotas
#: these. Two primary-key probes inside the insert, where a lookup of its own was a round trip.
_KEY_AS_READ = """
    EXISTS (SELECT 1 FROM api_keys AS k JOIN tenants AS t ON t.id = k.tenant_id
            WHERE k.id = :api_key_id AND k.tenant_id = :tenant_id AND k.revoked_at IS NULL
              AND t.active AND t.quotas = CAST(:quotas AS jsonb))
"""
_KEY_AS_READ_SQL = driver_sql(text(f"SELECT {_KEY_AS_READ}"))


def _new_row(session: Session, statement: TextClause, values: dict[str, Any]) -> Generation | None:
    """The inserted row, in the session as if read (later updates of the row expire it)."""
    raw = session.execute(statement, values).scalar_one_or_none()
    if raw is None:
        return None
    row = generation_from_json(raw)
    make_transient_to_detached(row)
    session.add(row)
    return row


_INSERT_SQL = driver_sql(_INSERT)
_INSERT_UNDER_NAMED_SQL = driver_sql(
    text(_INSERT_UNDER_POLICY.format(which=f"p.name = :name AND {_KEY_AS_READ}"))
)
_INSERT_UNDER_DEFAULT_SQL = driver_sql(
    text(_INSERT_UNDER_POLICY.format(which=f"p.is_default AND {_KEY_AS_READ}"))
)


class RowFields(TypedDict, total=False):
    """A new row's optional fields."""

    params: dict[str, Any] | None
    api_key_id: uuid.UUID | None
    request_id: str | None
    #: The caller's id for the row (a waiter registered before the row exists).
    generation_id: uuid.UUID | None


def _values(tenant_id: uuid.UUID, model: str, messages: Any, fields: RowFields) -> dict[str, Any]:
    return {
        "id": fields.get("generation_id") or uuid.uuid4(),
        "tenant_id": tenant_id,
        "api_key_id": fields.get("api_key_id"),
        "model": model,
        "messages": json.dumps(messages),
        "params": json.dumps(fields.get("params") or {}),
        "request_id": fields.get("request_id"),
        "created_at": utcnow(),
    }


def create_generation(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy_version_id: uuid.UUID,
    model: str,
    messages: Any,
    shadow_version_id: uuid.UUID | None = None,
    **fields: Unpack[RowFields],
) -> Generation:
    """A new `queued` generation, in the session as if read; send its task only after the
    transaction commits."""
    values = _values(tenant_id, model, messages, fields)
    values |= {"policy_version_id": policy_version_id, "shadow_version_id": shadow_version_id}
    row = _new_row(session, _INSERT, values)
    assert row is not None, "an INSERT ... VALUES makes its row"
    return row


def create_generation_under_policy(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy_name: str | None,
    model: str,
    messages: Any,
    **fields: Unpack[RowFields],
) -> Generation:
    """`create_generation` under the active (and shadow) version of the named policy, or of the
    tenant's default when no name is given, in one statement. Raises what
    `resolve_active_version_ids` raises (`PolicyNotFound`, `NoActiveVersion`) when there is
    no such version."""
    values = _values(tenant_id, model, messages, fields)
    if policy_name is None:
        row = _new_row(session, _INSERT_UNDER_DEFAULT, values)
    else:
        row = _new_row(session, _INSERT_UNDER_NAMED, values | {"name": policy_name})
    if row is not None:
        return row
    # No row: say why (a policy made active meanwhile is taken as the resolver finds it).
    active = resolve_active_version_ids(
        session=session, tenant_id=tenant_id, policy_name=policy_name
    )
    return create_generation(
        session=session,
        tenant_id=tenant_id,
        policy_version_id=active.version_id,
        shadow_version_id=active.shadow_version_id,
        model=model,
        messages=messages,
        **(fields | {"generation_id": values["id"]}),
    )


async def create_generation_under_policy_async(
    *,
    conn: psycopg.AsyncConnection,
    tenant_id: uuid.UUID,
    key_id: uuid.UUID,
    quotas: Mapping[str, Any],
    policy_name: str | None,
    model: str,
    messages: Any,
    **fields: Unpack[RowFields],
) -> dict[str, Any]:
    """`create_generation_under_policy` on a connection of the event loop (autocommit: the
    insert is one statement, committed as it returns); the row as written, as `row_to_json`
    gives it (`generation_from_row` reads it; most callers need only a few of its fields).

    The row's `api_key_id` is `key_id`, and the row is written only while that key of
    `tenant_id` is live (not revoked, its tenant active) and its tenant's quotas are `quotas`,
    as the caller read them; otherwise nothing is written and `KeyChanged` is raised."""
    values = _values(tenant_id, model, messages, fields)
    values |= {"api_key_id": key_id, "quotas": json.dumps(quotas)}
    if policy_name is None:
        found = await (await conn.execute(_INSERT_UNDER_DEFAULT_SQL, values)).fetchone()
    else:
        named = values | {"name": policy_name}
        found = await (await conn.execute(_INSERT_UNDER_NAMED_SQL, named)).fetchone()
    if found is None and not await _key_as_read(conn, values):
        raise KeyChanged(key_id)
    if found is None:  # say why (a policy made active meanwhile is taken as the resolver finds it)
        active = await resolve_active_version_ids_async(
            conn=conn, tenant_id=tenant_id, policy_name=policy_name
        )
        values |= {"policy_version_id": active.version_id}
        values |= {"shadow_version_id": active.shadow_version_id}
        found = await (await conn.execute(_INSERT_SQL, values)).fetchone()
        assert found is not None, "an INSERT ... VALUES makes its row"
    row: dict[str, Any] = json.loads(found[0])
    return row


async def _key_as_read(conn: psycopg.AsyncConnection, values: dict[str, Any]) -> bool:
    """Whether the insert's key is still as its caller read it (`_KEY_AS_READ`)."""
    found = await (await conn.execute(_KEY_AS_READ_SQL, values)).fetchone()
    return bool(found and found[0])
