"""Sends Celery tasks by name from the API process (which never imports the worker code)."""

from __future__ import annotations

from typing import Any, Protocol

from celery import Celery

from core.queue import celery_config
from core.settings import Settings


class TaskSender(Protocol):
    def send(
        self, name: str, args: list[Any], *, headers: dict[str, str] | None = None
    ) -> None: ...


class CeleryTaskSender:
    """A Celery client configured like the workers; only `send_task`, no task modules."""

    def __init__(self, settings: Settings) -> None:
        if settings.broker_url is None:
            (settings.broker_folder / "control").mkdir(parents=True, exist_ok=True)
        self.app = Celery("rcs-api")
        self.app.conf.update(celery_config(settings))

    def send(self, name: str, args: list[Any], *, headers: dict[str, str] | None = None) -> None:
        self.app.send_task(name, args=args, headers=headers or {})
