"""Periodic housekeeping tasks run by beat."""

from __future__ import annotations

import logging
import time
from typing import Any

from core.queue import HEARTBEAT_TASK, LOST_TASKS_TASK
from core.settings import get_settings
from workers.celery_app import app
from workers.lost_tasks import resend_lost
from workers.runtime import redis_client, session_factory

log = logging.getLogger(__name__)


@app.task(name=HEARTBEAT_TASK, ignore_result=True)
def heartbeat() -> float:
    """Touch `var/worker-heartbeat` so an operator (and `rcs status`) sees beat and a worker alive."""
    now = time.time()
    path = get_settings().data_dir / "worker-heartbeat"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{now:.3f}\n")
    log.info("heartbeat at %.3f", now)
    return now


@app.task(name=LOST_TASKS_TASK, ignore_result=True)
def resend_lost_tasks() -> int:
    """Send again the task of every queued or running row whose message the broker lost."""

    def send(name: str, args: list[Any], task_id: str) -> None:
        app.send_task(name, args=args, task_id=task_id)

    return resend_lost(
        factory=session_factory(),
        client=redis_client(),
        send=send,
        grace_seconds=get_settings().lost_task_grace_seconds,
    )
