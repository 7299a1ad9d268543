"""Rows that run without a claim (`core.row_start`) are shown `running` once they have decoded
for a while.

Such a row goes from queued to succeeded in the recorder's one transaction, so a short row
costs no transaction before its result. One still decoding `delay` seconds after it started is
marked running then, with every other row due, in one statement: a long generation still shows
`running` while it decodes (and can no longer be cancelled). Best effort: a mark that fails is
logged and dropped; the row's result is written all the same.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

log = logging.getLogger(__name__)

Mark = Callable[[Mapping[uuid.UUID, datetime]], None]


class StartMarks:
    def __init__(self, mark: Mark, *, delay: float) -> None:
        """`mark(started)` marks the rows of `started` (id -> when it started) running."""
        self.mark = mark
        self.delay = delay
        self._due: dict[uuid.UUID, tuple[float, datetime]] = {}  # id -> (due, started at)
        self._wake = threading.Condition()
        threading.Thread(target=self._run, name="start-marks", daemon=True).start()

    def started(self, row_ids: Iterable[uuid.UUID], at: datetime) -> None:
        due = time.monotonic() + self.delay
        with self._wake:
            idle = not self._due
            for row_id in row_ids:
                self._due[row_id] = (due, at)
            # Rows are due in the order they start: a thread already waiting for an earlier
            # row needs no wake-up (one per message cost a thread switch each).
            if idle:
                self._wake.notify()

    def finished(self, row_id: uuid.UUID) -> None:
        """The row's result is in: it needs no mark any more."""
        with self._wake:
            self._due.pop(row_id, None)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due:
                    self._wake.wait()
                now = time.monotonic()
                first = min(due for due, _ in self._due.values())
                if first > now:
                    self._wake.wait(first - now)
                    continue
                ready = {gid: at for gid, (due, at) in self._due.items() if due <= now}
                for row_id in ready:
                    del self._due[row_id]
            try:
                self.mark(ready)
            except Exception:
                log.exception("marking %d rows running failed", len(ready))
