"""The Celery application of the workers (and of beat).

Task modules import torch lazily, so starting beat or inspecting the app stays cheap.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_init

from core.queue import celery_config
from core.settings import get_settings


def create_celery_app() -> Celery:
    settings = get_settings()
    app = Celery("rcs")
    app.conf.update(celery_config(settings))
    # A worker that lost the broker exits instead of reconnecting in place: after an in-place
    # reconnect the batching consumer stopped taking `generate` messages (seen under load), while a
    # fresh process (restarted by `rcs serve`'s supervisor or the orchestrator) has no stale state.
    # Its unacknowledged messages are requeued (at once under the supervisor).
    app.conf.broker_connection_retry = False
    app.conf.include = [
        "workers.tasks.maintenance",
        "workers.tasks.generate",
        "workers.tasks.calibrate",
        "workers.tasks.autotune",
    ]
    return app


app = create_celery_app()

#: Celery's INFO line per message received and per task succeeded. The worker logs every
#: generation itself, with what an operator needs (`workers.tasks.generate`); Celery's two
#: lines per message cost the worker about 2.5% of its Python time at 32 clients. Its warnings
#: and errors (a task that failed or was retried) still show.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


@worker_init.connect
def _quiet_per_task_logs(**_: object) -> None:
    # Before the consumer starts: Celery reads these levels once, when it builds its tracers.
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
