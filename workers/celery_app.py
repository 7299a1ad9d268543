"""The Celery application of the workers (and of beat).

Task modules import torch lazily, so starting beat or inspecting the app stays cheap.
"""

from __future__ import annotations

from celery import Celery

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
