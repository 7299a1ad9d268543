"""The recorder's group commit: one transaction for rows that finished together, and a row the
database refuses fails alone, not the rows written beside it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy.exc import OperationalError

from workers.row_recorder import RowRecorder


@dataclass(frozen=True)
class Row:
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def test_a_refused_row_fails_alone() -> None:
    bad, gate = Row(), threading.Event()
    groups: list[list[uuid.UUID]] = []
    notified: list[uuid.UUID] = []

    def write(rows: Sequence[Row], results: Sequence[str]) -> Mapping[uuid.UUID, object]:
        gate.wait(10)  # holds the first write while the other rows queue up
        groups.append([r.id for r in rows])
        if bad in rows:
            raise ValueError("the database refused a row")
        return {r.id: result for r, result in zip(rows, results, strict=True)}

    recorder = RowRecorder[Row, str](write, lambda rows, moved: notified.extend(moved))
    first = recorder.record(Row(), "first")
    good = [Row(), Row()]
    futures = [recorder.record(row, "ok") for row in (good[0], bad, good[1])]
    gate.set()
    assert first.result(10) is True
    assert futures[0].result(10) is True and futures[2].result(10) is True
    with pytest.raises(ValueError, match="refused"):
        futures[1].result(10)
    assert any(bad.id in g and len(g) > 1 for g in groups)  # tried with others first
    assert {good[0].id, good[1].id} <= set(notified) and bad.id not in notified


def test_a_lost_database_fails_the_group_once() -> None:
    # `write` has already waited the outage out (`retry_on_disconnect`): no second wait per row.
    gate, calls = threading.Event(), []

    def write(rows: Sequence[Row], results: Sequence[str]) -> Mapping[uuid.UUID, object]:
        gate.wait(10)  # holds the first write while the other rows queue up
        calls.append(len(rows))
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    recorder = RowRecorder[Row, str](write, lambda rows, moved: None)
    futures = [recorder.record(Row(), "ok") for _ in range(4)]
    gate.set()
    for future in futures:
        with pytest.raises(OperationalError):
            future.result(10)
    assert sum(calls) == 4  # each row tried once, in its group: never again alone
