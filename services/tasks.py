"""Sending a task for a committed row: the sender's interface, and what happens when the broker
refuses (the row is made final, so nothing waits for a task that was never queued)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session

#: The error of a row whose task the broker refused: final, so nothing waits for it.
NOT_QUEUED = "not queued: the broker was unavailable"


class BrokerUnavailable(Exception):
    """The broker did not take the task: the caller answers 503 and retries later."""


class TaskSender(Protocol):
    def send(
        self, name: str, args: list[Any], *, headers: dict[str, str] | None = None
    ) -> None: ...


def send_after_commit(
    session: Session,
    sender: TaskSender,
    name: str,
    args: list[Any],
    *,
    request_id: str,
    mark_failed: Callable[[str], object],
) -> None:
    """Commit the row, then send its task (a worker must see the row). If the broker refuses,
    `mark_failed(NOT_QUEUED)` makes the row final and commits it, so nothing waits for a task that
    was never queued, and `BrokerUnavailable` reaches the caller (503)."""
    session.commit()
    try:
        sender.send(name, args, headers={"request_id": request_id})
    except BrokerUnavailable:
        mark_failed(NOT_QUEUED)
        session.commit()
        raise
