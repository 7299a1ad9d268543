"""Generation rows: created `queued` by the API, moved through their states by workers.

State changes are single guarded UPDATEs (`transitions`: ``WHERE status IN (...)``), atomic and
idempotent: each returns whether it moved the row. A redelivered task finds its row final and
must not count it again — record statistics only when `mark_succeeded` returns True.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.summary import SummaryRow
from db.errors import GenerationNotFound
from db.models import Generation
from db.repositories.common import expire_cached, one_or_raise
from db.repositories.generation_json import generation_from_json
from db.repositories.stats import upsert_sql
from db.repositories.transitions import ACTIVE_STATUSES, finish, start
from db.types import utcnow


def get_generation(
    *, session: Session, tenant_id: uuid.UUID, generation_id: uuid.UUID
) -> Generation:
    """A tenant's generation by id; another tenant's is `GenerationNotFound` too."""
    stmt = select(Generation).where(
        Generation.id == generation_id, Generation.tenant_id == tenant_id
    )
    return one_or_raise(session, stmt, GenerationNotFound(generation_id))


def list_generations(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    limit: int = 50,
    before: datetime | None = None,
    status: str | None = None,
    refusal_category: str | None = None,
    refused: bool | None = None,
    policy_version_ids: Sequence[uuid.UUID] | None = None,
    leak: bool | None = None,
) -> list[Generation]:
    """A tenant's generations, newest first, narrowed by every filter given; `before` pages
    backwards by creation time."""
    stmt = select(Generation).where(Generation.tenant_id == tenant_id)
    if before is not None:
        stmt = stmt.where(Generation.created_at < before)
    if status is not None:
        stmt = stmt.where(Generation.status == status)
    if refusal_category is not None:
        stmt = stmt.where(Generation.refusal_category == refusal_category)
    if refused is not None:
        stmt = stmt.where(Generation.refused.is_(refused))
    if policy_version_ids is not None:
        stmt = stmt.where(Generation.policy_version_id.in_(policy_version_ids))
    if leak is not None:
        stmt = stmt.where(Generation.leak.is_(leak))
    stmt = stmt.order_by(Generation.created_at.desc()).limit(limit)
    return list(session.scalars(stmt))


def load_generations(*, session: Session, generation_ids: Sequence[uuid.UUID]) -> list[Generation]:
    """Rows by id with no tenant filter, for workers (task payloads carry row ids only)."""
    if not generation_ids:
        return []
    rows = session.scalars(select(Generation).where(Generation.id.in_(generation_ids)))
    return list(rows)


def mark_running(*, session: Session, generation_id: uuid.UUID) -> bool:
    """queued -> running (stamps `started_at`). False if the row was not queued."""
    return start(session, Generation, generation_id)


#: A claim, on every request's path: a constant statement (the ORM's bulk update returning the
#: entity cost about twice the client's CPU per claim: `bench/claim_cost.py`).
_CLAIM = text(
    """
    WITH todo AS (
        SELECT id FROM generations
        WHERE id = ANY(CAST(:ids AS uuid[])) AND status = ANY(CAST(:active AS text[]))
        ORDER BY id FOR UPDATE
    )
    UPDATE generations AS g
    SET status = 'running', started_at = coalesce(g.started_at, :now)
    FROM todo
    WHERE g.id = todo.id AND g.status = ANY(CAST(:active AS text[]))
    RETURNING row_to_json(g)::text
    """
)


def claim_generations(*, session: Session, generation_ids: Sequence[uuid.UUID]) -> list[Generation]:
    """The rows still to do (queued, or running after a lost worker) among `generation_ids`,
    marked running in one statement, as detached `Generation`s; final or absent ones are left
    out. Rows are locked in id order, so two claims sharing rows cannot deadlock. `started_at`
    keeps the first claim's time."""
    if not generation_ids:
        return []
    params = {"ids": list(generation_ids), "now": utcnow(), "active": list(ACTIVE_STATUSES)}
    written = session.execute(_CLAIM, params).scalars().all()
    for generation_id in generation_ids:
        expire_cached(session, Generation, generation_id)
    return [generation_from_json(row) for row in written]


def claim_generation(*, session: Session, generation_id: uuid.UUID) -> Generation | None:
    """`claim_generations` of one row: the row marked running, or None if final or absent."""
    found = claim_generations(session=session, generation_ids=[generation_id])
    return found[0] if found else None


@dataclass(frozen=True)
class Succeeded:
    """A finished row's result, as `mark_succeeded` writes it."""

    generation_id: uuid.UUID
    output: str
    refused: bool
    refusal_category: str | None
    probabilities: dict[str, float] | None = None
    summary: SummaryRow | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    leak: bool | None = None  # a checked answer's verdict
    leak_phrase: str | None = None
    started_at: datetime | None = None  # kept if the row has one (a claim's)


#: Every row of a batch, queued|running -> succeeded, in one statement. The rows travel as one
#: JSON array (psycopg dumping ten array parameters element by element was a third of the
#: statement's client-side cost).
_MARK_SUCCEEDED_SQL = """
    UPDATE generations AS g
    SET status = 'succeeded', finished_at = :now, error = NULL,
        started_at = coalesce(g.started_at, u.started_at),
        output = u.output, refused = u.refused, refusal_category = u.refusal_category,
        probabilities = u.probabilities, summary = u.summary, prompt_tokens = u.prompt_tokens,
        completion_tokens = u.completion_tokens, leak = u.leak, leak_phrase = u.leak_phrase
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS u(id uuid, output text, refused boolean, refusal_category text, probabilities jsonb,
              summary jsonb, prompt_tokens integer, completion_tokens integer, leak boolean,
              leak_phrase text, started_at timestamptz)
    WHERE g.id = u.id AND g.status = ANY(CAST(:active AS text[]))
    RETURNING g.id, row_to_json(g)::text AS written
"""
_MARK_SUCCEEDED = text(_MARK_SUCCEEDED_SQL)
#: The same, and the rows' statistics in the same statement if every row moved (one round trip
#: fewer on every generation's path; a redelivered row that did not move is the rare case).
_MARK_SUCCEEDED_COUNTED = text(
    f"""
    WITH moved AS ({_MARK_SUCCEEDED_SQL}),
    counted AS ({upsert_sql("stats", "(SELECT count(*) FROM moved) = :expected")})
    SELECT id, written FROM moved
    """
)


def mark_many_succeeded(
    *, session: Session, rows: Sequence[Succeeded], stats: Sequence[Mapping[str, object]] = ()
) -> dict[uuid.UUID, str]:
    """queued|running -> succeeded with each row's result, in one statement (the worker records
    every row that finished meanwhile at once); returns the rows that moved, by id, each as the
    JSON of the whole row as written (`generation_from_json` reads it back). A row already final
    does not move and is not overwritten (do not count it again).

    `stats` (`stats.stat_rows` of every row's increments) are added in the same statement only
    if every row (each id once) moved; otherwise the caller counts the rows that did."""
    rows = list({r.generation_id: r for r in reversed(rows)}.values())  # an id once: its first
    if not rows:
        return {}
    payload = [
        {
            "id": str(r.generation_id),
            "output": r.output,
            "refused": r.refused,
            "refusal_category": r.refusal_category,
            "probabilities": r.probabilities,
            "summary": r.summary,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "leak": r.leak,
            "leak_phrase": r.leak_phrase,
            "started_at": r.started_at.isoformat() if r.started_at else None,
        }
        for r in rows
    ]
    params: dict[str, object] = {
        "now": utcnow(),
        "active": list(ACTIVE_STATUSES),
        "rows": json.dumps(payload),
    }
    statement = _MARK_SUCCEEDED
    if stats:
        params |= {"stats": json.dumps(list(stats)), "expected": len(rows)}
        statement = _MARK_SUCCEEDED_COUNTED
    moved = session.execute(statement, params)
    written = {row_id: row for row_id, row in moved}
    for row_id in written:
        expire_cached(session, Generation, row_id)
    return written


#: Rows that run without a claim and still decode after a while: queued -> running.
_MARK_STARTED = text(
    """
    UPDATE generations AS g
    SET status = 'running', started_at = coalesce(g.started_at, s.started_at)
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS s(id uuid, started_at timestamptz)
    WHERE g.id = s.id AND g.status = 'queued'
    """
)


def mark_started(*, session: Session, started: Mapping[uuid.UUID, datetime]) -> None:
    """queued -> running for each row (with the time it started), in one statement; a row no
    longer queued (final already, or claimed) is left as it is."""
    if not started:
        return
    rows = [{"id": str(gid), "started_at": at.isoformat()} for gid, at in started.items()]
    session.execute(_MARK_STARTED, {"rows": json.dumps(rows)})
    for generation_id in started:
        expire_cached(session, Generation, generation_id)


def mark_succeeded(*, session: Session, generation_id: uuid.UUID, **result: Any) -> bool:
    """queued|running -> succeeded with the result (the fields of `Succeeded`). False if already
    final (do not count again)."""
    row = Succeeded(generation_id=generation_id, **result)
    return generation_id in mark_many_succeeded(session=session, rows=[row])


def mark_failed(*, session: Session, generation_id: uuid.UUID, error: str) -> bool:
    """queued|running -> failed with an error message. False if already final."""
    return finish(session, Generation, generation_id, "failed", values={"error": error})


def mark_cancelled(
    *, session: Session, generation_id: uuid.UUID, tenant_id: uuid.UUID | None = None
) -> bool:
    """queued|running -> cancelled (scoped to `tenant_id` when given). False if already final."""
    return finish(session, Generation, generation_id, "cancelled", tenant_id=tenant_id)
