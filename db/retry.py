"""Wait out a database that is restarting instead of dropping a task's work.

A task whose message is acknowledged late must not fail while PostgreSQL restarts: Celery would
acknowledge the message on failure and the row would stay `queued` or `running` for ever. Each
unit of work runs in its own transaction, so running it again after a connection error is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Long enough for the supervisor (or an orchestrator) to bring the database back.
RETRY_SECONDS = 120.0
PAUSE_SECONDS = 0.5
TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError)


def retry_on_disconnect(work: Callable[[], T], *, seconds: float = RETRY_SECONDS) -> T:
    """`work()`, run again while the database cannot be reached, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return work()
        except TRANSIENT as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("database unavailable (%s); retrying", type(exc).__name__)
            time.sleep(PAUSE_SECONDS)
