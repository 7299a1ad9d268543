"""Sends Celery tasks by name from the API process (which never imports the worker code); the
sender's interface and the broker-refused path are `services.tasks`."""

from __future__ import annotations

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
                message.name, args=message.args, task_id=message.task_id, headers=message.headers
            )
        except (kombu.exceptions.OperationalError, redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(str(exc)) from exc
