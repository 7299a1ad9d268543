"""Keep a long-lived process's start-up objects out of the cyclic garbage collector.

A worker holds the model, torch, transformers and Celery, the API FastAPI, pydantic and
SQLAlchemy: objects that live as long as the process. Every full (generation 2) collection walks
them all, on whichever thread allocates, in the middle of a request: measured under
`bench.service` at 8 clients, one such pause took 229 ms in the worker and 90 ms in the API.
Frozen once start-up is done (`gc.freeze`), they sit in a permanent generation that collections
skip; no full collection then paused serving in the same run.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_startup_objects() -> None:
    """Collect what start-up left behind, then freeze everything alive; once per process (a
    test process starting many apps freezes only the first time)."""
    global _frozen
    with _lock:
        if _frozen:
            return
        gc.collect()  # start-up garbage is freed, not frozen
        gc.freeze()
        _frozen = True
