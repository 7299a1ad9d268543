"""Sending a task for a committed row: the sender's interface, and what happens when the broker
refuses (the row is made final, so nothing waits for a task that was never queued)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

#: The error of a row whose task the broker refused: final, so nothing waits for it.
NOT_QUEUED = "not queued: the broker was unavailable"


class BrokerUnavailable(Exception):
    """The broker did not take the task: the caller answers 503 and retries later."""


class TaskSender(Protocol):
    def send(
        self, name: str, args: list[Any], *, headers: dict[str, str] | None = None
    ) -> None: ...


def send_or_undo(send: Callable[[], None], undo: Callable[[], None]) -> None:
    """Send a task whose row is committed; if the broker refuses it, `undo` marks the row final
    (so nothing waits for a task that was never queued) and the caller gets 503."""
    try:
        send()
    except BrokerUnavailable:
        undo()
        raise
