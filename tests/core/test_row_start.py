"""A row's start travels in its message only when small, and reads back as it was written."""

from __future__ import annotations

import uuid

from core.row_start import MAX_CARRIED_CHARS, QueuedRow, RowStart, tenant_share


def _start(content: str) -> RowStart:
    row = {"id": str(uuid.uuid4()), "messages": [{"role": "user", "content": content}]}
    return RowStart(row=row, share=2.0)


def test_a_small_start_is_carried_and_reads_back_as_written() -> None:
    start = _start("What is 2 plus 2?")
    carried = start.carried()
    assert carried is not None
    row_id = uuid.UUID(start.row["id"])
    assert QueuedRow.from_args(str(row_id), False, carried) == QueuedRow(row_id, False, start)


def test_a_large_start_stays_in_the_database() -> None:
    assert _start("x" * MAX_CARRIED_CHARS).carried() is None


def test_older_message_shapes_name_rows_without_a_start() -> None:
    row_id = uuid.uuid4()
    assert QueuedRow.from_args(str(row_id)) == QueuedRow(row_id, False, None)
    assert QueuedRow.from_args(str(row_id), True) == QueuedRow(row_id, True, None)
    unreadable = {"messages": [], "share": "a lot"}  # another version's start: claimed instead
    assert QueuedRow.from_args(str(row_id), False, unreadable) == QueuedRow(row_id, False, None)


def test_a_share_is_positive_and_defaults_to_one() -> None:
    assert tenant_share({"share": 3}) == 3.0
    assert tenant_share({}) == tenant_share(None) == tenant_share({"share": 0}) == 1.0
