"""The engine process's CPU priority.

The engine loop is the service's one serial stage: every request's decode steps pass through
it, while the API, the consumers and the databases can each run beside it. On a machine whose
cores they share, a loop that waits behind them for a core makes every batch later and
smaller, so it is given the CPU first (a lower nice value). Set when the process starts, before
most of its threads exist: on Linux a nice value belongs to a thread, and new threads inherit
their creator's; the few already running (one starts as torch loads) are set one by one.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def set_engine_priority(nice: int) -> int:
    """Give this process (its calling thread, and the threads it starts later) the nice value
    `nice`; returns the value it runs at. Raising the priority needs CAP_SYS_NICE (root has
    it); without it the process keeps its value and says so."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice == current:
        return current
    try:
        for thread in _threads():
            os.setpriority(os.PRIO_PROCESS, thread, nice)
    except PermissionError:
        log.info(
            "engine priority stays at nice %d: nice %d needs CAP_SYS_NICE (RCS_ENGINE_NICE)",
            current,
            nice,
        )
        return current
    return nice


def _threads() -> list[int]:
    """This process's thread ids, the calling thread's first (0 where /proc is not there)."""
    tasks = Path("/proc/self/task")
    others = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else []
    return [0] + [t for t in others if t != threading.get_native_id()]
