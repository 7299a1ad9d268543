"""Sends Celery tasks by name from the API process (which never imports the worker code); the
sender's interface and the broker-refused path are `services.tasks`."""

from __future__ import annotations

from typing import Any

import kombu.exceptions
import redis
from celery import Celery

from core.queue import celery_config
from core.settings import Settings
from services.tasks import NOT_QUEUED as NOT_QUEUED
from services.tasks import BrokerUnavailable
from services.tasks import TaskMessage as TaskMessage
from services.tasks import TaskSender as TaskSender


class CeleryTaskSender:
    """A Celery client configured like the workers; only `send_task`, no task modules."""

    def __init__(self, settings: Settings) -> None:
        self.app = Celery("rcs-api")
        self.app.conf.update(celery_config(settings))

    def send(self, message: TaskMessage) -> None:
        try:
            self.app.send_task(
                message.name,
                args=message.args,
                task_id=message.task_id,
                headers=message.headers,
                argsrepr=args_for_logs(message.args),
            )
        except (kombu.exceptions.OperationalError, redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(str(exc)) from exc


class _Elided:
    def __repr__(self) -> str:
        return "{...}"


def _elided(value: Any) -> Any:
    if isinstance(value, dict):
        return _Elided()
    if isinstance(value, list | tuple):
        return [_elided(v) for v in value]
    return value


def args_for_logs(args: list[Any]) -> str:
    """A task's arguments as the worker logs them (Celery's `argsrepr`): a mapping, such as the
    row a generation's message carries (`core.row_start`), shows as `{...}`, so no prompt
    reaches a log (and Celery's `saferepr` does not walk it on every send: 0.13 ms)."""
    return repr(_elided(args))
