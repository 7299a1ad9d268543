"""Group commit of finished rows: one transaction for every row that finished meanwhile.

Consumer threads finish at their own pace, but writing each row and its statistics in its own
transaction costs a round of statements per row and serialises threads on the same statistics
rows (same tenant, version, category and minute). `RowRecorder.record` queues a row; a writer
thread takes everything queued, writes it with `write(rows, results)` in one transaction (which
returns the rows that moved, by id, each with what the writer says of it), then runs
`after_commit(rows, written)` (notifications) and resolves each row's `Future` with whether the
row moved. The consumer returns only after that, so its message is still acknowledged only after
its row is written. When the database refuses a group's transaction (not a lost connection), each
of its rows is written again alone, so a refused row fails alone, not every row beside it.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Generic, Protocol, TypeVar

from db.retry import TRANSIENT

log = logging.getLogger(__name__)


class HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


Row = TypeVar("Row", bound=HasId)
Result = TypeVar("Result")


class RowRecorder(Generic[Row, Result]):
    def __init__(
        self,
        write: Callable[[Sequence[Row], Sequence[Result]], Mapping[uuid.UUID, object]],
        after_commit: Callable[[Sequence[Row], Mapping[uuid.UUID, object]], None],
        *,
        max_rows: int = 256,
    ) -> None:
        """`write` returns the rows that moved, keyed by `row.id`."""
        self.write = write
        self.after_commit = after_commit
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[tuple[Row, Result, Future[bool]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="row-recorder", daemon=True).start()

    def record(self, row: Row, result: Result) -> Future[bool]:
        future: Future[bool] = Future()
        self._queue.put((row, result, future))
        return future

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.max_rows and not self._queue.empty():
                items.append(self._queue.get())
            self._write(items)

    def _write(self, items: list[tuple[Row, Result, Future[bool]]]) -> None:
        rows = [row for row, _, _ in items]
        try:
            moved = self.write(rows, [result for _, result, _ in items])
        except Exception as exc:
            # A database that stayed away was waited out once already (`retry_on_disconnect`):
            # only a refused row is worth each row's own transaction.
            if len(items) > 1 and not isinstance(exc, TRANSIENT):
                log.warning("writing %d rows together failed (%s); each alone", len(items), exc)
                for item in items:
                    self._write([item])
                return
            log.exception("writing %d rows failed", len(items))
            for _, _, future in items:
                future.set_exception(exc)
            return
        try:
            self.after_commit(rows, moved)
        except Exception:  # the rows are written; waiters fall back to reading them
            log.exception("notifying %d written rows failed", len(rows))
        for row, _, future in items:
            future.set_result(row.id in moved)
