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
    app.conf.include = [
        "workers.tasks.maintenance",
        "workers.tasks.generate",
        "workers.tasks.calibrate",
        "workers.tasks.autotune",
    ]
    return app


app = create_celery_app()
