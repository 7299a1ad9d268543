"""Sends Celery tasks by name from the API process (which never imports the worker code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import kombu.exceptions
import redis
from celery import Celery

from core.queue import celery_config
from core.settings import Settings

#: The error of a row whose task the broker refused: final, so nothing waits for it.
NOT_QUEUED = "not queued: the broker was unavailable"


class BrokerUnavailable(Exception):
    """The broker did not take the task: the caller answers 503 and retries later."""


class TaskSender(Protocol):
    def send(
        self, name: str, args: list[Any], *, headers: dict[str, str] | None = None
    ) -> None: ...


class CeleryTaskSender:
    """A Celery client configured like the workers; only `send_task`, no task modules."""

    def __init__(self, settings: Settings) -> None:
        self.app = Celery("rcs-api")
        self.app.conf.update(celery_config(settings))

    def send(self, name: str, args: list[Any], *, headers: dict[str, str] | None = None) -> None:
        try:
            self.app.send_task(name, args=args, headers=headers or {})
        except (kombu.exceptions.OperationalError, redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(str(exc)) from exc


def send_or_undo(send: Callable[[], None], undo: Callable[[], None]) -> None:
    """Send a task whose row is committed; if the broker refuses it, `undo` marks the row final
    (so nothing waits for a task that was never queued) and the caller gets 503."""
    try:
        send()
    except BrokerUnavailable:
        undo()
        raise
