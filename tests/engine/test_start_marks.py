"""A row that runs without a claim is marked running only if it still decodes after the delay,
with the others due in one statement; a row already final is left as it is."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime

import pytest
from sqlalchemy import Engine

from db.models import Generation
from db.repositories.generations import mark_started, mark_succeeded
from db.session import create_session_factory, session_scope
from db.types import utcnow
from tests.db.factories import make_generation, make_policy, make_tenant
from workers.start_marks import StartMarks

pytestmark = pytest.mark.integration


def test_only_rows_still_decoding_after_the_delay_are_marked_running(pg_engine: Engine) -> None:
    factory = create_session_factory(pg_engine)
    with session_scope(factory) as session:
        tenant, _ = make_tenant(session, f"marks-{uuid.uuid4().hex[:8]}")
        policy = make_policy(session, tenant)
        short, long_a, long_b, final = (
            make_generation(session, tenant, policy).id for _ in range(4)
        )
        done = {"output": "done", "refused": False, "refusal_category": None}
        assert mark_succeeded(session=session, generation_id=final, **done)
    calls: list[list[uuid.UUID]] = []
    marked = threading.Event()

    def mark(started: Mapping[uuid.UUID, datetime]) -> None:
        calls.append(list(started))
        with session_scope(factory) as session:
            mark_started(session=session, started=started)
        marked.set()

    marks = StartMarks(mark, delay=0.3)
    at = utcnow()
    marks.started([short, long_a, long_b, final], at)
    marks.finished(short)  # its result came first: no mark, no statement
    assert marked.wait(10)
    assert calls == [[long_a, long_b, final]]  # one statement for every row due
    with factory() as session:
        rows = {g: session.get(Generation, g) for g in (short, long_a, long_b, final)}
    assert rows[short].status == "queued" and rows[short].started_at is None
    assert rows[long_a].status == rows[long_b].status == "running"
    assert rows[long_a].started_at == at
    assert rows[final].status == "succeeded"  # a final row is never moved back
    time.sleep(0.4)
    assert len(calls) == 1  # nothing else was due


def test_a_row_started_while_an_earlier_one_waits_is_marked_at_its_own_time() -> None:
    """Rows are due in the order they start, so a later row wakes nobody; it is still marked,
    after its own delay."""
    calls: list[tuple[float, list[uuid.UUID]]] = []
    both = threading.Event()

    def mark(started: Mapping[uuid.UUID, datetime]) -> None:
        calls.append((time.monotonic(), list(started)))
        if len(calls) == 2:
            both.set()

    first, second = uuid.uuid4(), uuid.uuid4()
    marks = StartMarks(mark, delay=0.3)
    began = time.monotonic()
    marks.started([first], utcnow())
    time.sleep(0.15)
    marks.started([second], utcnow())
    assert both.wait(10)
    assert [ids for _, ids in calls] == [[first], [second]]
    assert calls[0][0] - began >= 0.3 and calls[1][0] - began >= 0.45
