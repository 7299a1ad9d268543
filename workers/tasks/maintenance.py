"""Periodic housekeeping tasks run by beat."""

from __future__ import annotations

import logging
import time

from core.queue import HEARTBEAT_TASK
from core.settings import get_settings
from workers.celery_app import app

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
