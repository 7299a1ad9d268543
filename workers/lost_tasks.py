"""Send again the task of a queued or running row whose message the broker no longer holds.

kombu's Redis transport takes a message off its queue (BRPOP) before it writes it to the
`unacked` hash: a worker killed between the two loses the message (seen: one generation in a few
hundred kills under load), and so does an API killed between its commit and its send. The
database is the record. A row still to do, older than a grace period, whose id (a `generate`
task's id, or listed in a `generate_batch` message's `rows` header) is neither queued nor
unacknowledged in two snapshots taken apart, gets its task again. A duplicate is harmless: a
claim takes a queued or running row and the final write is guarded, so a row may run twice but
counts once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from kombu.transport.redis import Channel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.queue import CALIBRATE_TASK, GENERATE_TASK, QUEUES
from db.models import UNFINISHED, CalibrationRun, Generation
from db.repositories.jobs import JobModel, unfinished_before
from db.types import utcnow
from services.task_batching import ROWS_HEADER

log = logging.getLogger(__name__)
#: Seconds between the two snapshots: far longer than a message spends in a worker's hands
#: between leaving its queue and entering `unacked`.
RECHECK_SECONDS = 3.0
#: Rows looked at per check and per table (the oldest first).
CHECK_LIMIT = 1000


@dataclass(frozen=True)
class JobKind:
    model: JobModel
    task: str
    #: The task's arguments for a row. Generations are sent as streamed: a client may be
    #: following the lost one's stream, and an unread stream only costs its Redis key's TTL.
    args: Callable[[uuid.UUID], list[Any]]


KINDS = (
    JobKind(Generation, GENERATE_TASK, lambda row_id: [str(row_id), True]),
    JobKind(CalibrationRun, CALIBRATE_TASK, lambda row_id: [str(row_id)]),
)
Send = Callable[[str, list[Any], str], None]


def _broker_keys() -> list[str]:
    """Every Redis list kombu may queue our tasks in (one per priority step)."""
    steps = Channel.priority_steps
    return [f"{q}{Channel.sep}{p}" if p else q for q in QUEUES for p in steps]


def _row_ids(message: dict[str, Any]) -> set[str]:
    """The ids a message stands for: its task id, and the rows of a `generate_batch` message."""
    headers = message.get("headers", {})
    ids = set(str(headers.get(ROWS_HEADER, "")).split())
    if headers.get("id"):
        ids.add(headers["id"])
    return ids


def held_task_ids(client: redis.Redis) -> set[str]:
    """Task ids of every message the broker holds, queued or delivered and unacknowledged, and
    the row ids of its batch messages, read in one transaction (a message moving between the
    two is seen in one of them)."""
    pipe = client.pipeline(transaction=True)
    for key in _broker_keys():
        pipe.lrange(key, 0, -1)
    pipe.hvals(Channel.unacked_key)
    *queued, unacked = pipe.execute()
    ids = {i for batch in queued for raw in batch for i in _row_ids(json.loads(raw))}
    # An unacknowledged entry is `[message, exchange, routing key]`.
    return ids | {i for raw in unacked for i in _row_ids(json.loads(raw)[0])}


def _still_unfinished(
    session: Session, model: JobModel, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    return set(session.scalars(select(model.id).where(model.id.in_(ids), UNFINISHED)))


def resend_lost(
    *,
    factory: sessionmaker[Session],
    client: redis.Redis,
    send: Send,
    grace_seconds: float,
    recheck_seconds: float = RECHECK_SECONDS,
) -> int:
    """Send again the task of every lost row; returns how many were sent."""
    before = utcnow() - timedelta(seconds=grace_seconds)
    with factory() as session:
        candidates = {
            kind: unfinished_before(
                session=session, model=kind.model, before=before, limit=CHECK_LIMIT
            )
            for kind in KINDS
        }
    if not any(candidates.values()):
        return 0
    first = held_task_ids(client)
    missing = {k: [i for i in ids if str(i) not in first] for k, ids in candidates.items()}
    if not any(missing.values()):
        return 0
    time.sleep(recheck_seconds)
    second = held_task_ids(client)
    sent = 0
    with factory() as session:  # after the second snapshot: a row finished meanwhile is skipped
        for kind, ids in missing.items():
            lost = [i for i in ids if str(i) not in second]
            for row_id in _still_unfinished(session, kind.model, lost) if lost else ():
                send(kind.task, kind.args(row_id), str(row_id))
                log.warning("sent again the lost task of %s %s", kind.model.__tablename__, row_id)
                sent += 1
    return sent
