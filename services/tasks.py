"""Sending a task for a committed row: the sender's interface, and what happens when the broker
refuses (the row is made final, so nothing waits for a task that was never queued)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from anyio.to_thread import run_sync
from sqlalchemy.orm import Session

#: The error of a row whose task the broker refused: final, so nothing waits for it.
NOT_QUEUED = "not queued: the broker was unavailable"


class BrokerUnavailable(Exception):
    """The broker did not take the task: the caller answers 503 and retries later."""


@dataclass(frozen=True)
class TaskMessage:
    """A task to send: its name and arguments, its id (a row's id: the lost-task check finds a
    row's message by it) and message headers."""

    name: str
    args: list[Any]
    task_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class TaskSender(Protocol):
    def send(self, message: TaskMessage) -> None: ...


async def send_from_loop(sender: TaskSender, message: TaskMessage) -> None:
    """`sender.send` for a caller on the event loop: its own `send_async` where it has one
    (`CoalescingSender`: one worker-thread hop per message), else in a worker thread."""
    send_async = getattr(sender, "send_async", None)
    if send_async is not None:
        await send_async(message)
    else:
        await run_sync(sender.send, message)


def send_after_commit(
    session: Session,
    sender: TaskSender,
    message: TaskMessage,
    *,
    mark_failed: Callable[[str], object],
) -> None:
    """Commit the row, then send its task (a worker must see the row). If the broker refuses,
    `mark_failed(NOT_QUEUED)` makes the row final and commits it, so nothing waits for a task that
    was never queued, and `BrokerUnavailable` reaches the caller (503)."""
    session.commit()
    try:
        sender.send(message)
    except BrokerUnavailable:
        mark_failed(NOT_QUEUED)
        session.commit()
        raise
