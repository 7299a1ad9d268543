"""One broker message for the generations committed while the previous one was being sent.

Each message costs a worker far more than a row does: the Redis transport's `BRPOP`, the
pipelines that hold and acknowledge it, Celery's dispatch (py-spy at 32 clients: 46% of the
worker's Python time). `CoalescingSender` wraps the real sender: a `generate` task sent while no
send is in flight goes out at once, as itself (no added wait); those sent meanwhile wait for it
and then leave together as one `generate_batch` message, up to `max_rows` per message, sent
by the first of them (each caller sends at most one message). Every caller still returns only
once its row's message is with the broker, and if the broker refuses, each caller of that
message gets `BrokerUnavailable` (and fails its own row). The batch message names its rows in
the `rows` header, where the lost-task check looks for them.

`send_async` does the same for callers on an event loop: they wait on the loop, and each message
costs one hop to a worker thread (the broker client is synchronous), not each caller.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyio.to_thread import run_sync

from core.queue import GENERATE_BATCH_TASK, GENERATE_TASK
from core.row_start import QueuedRow
from services.tasks import TaskMessage, TaskSender

#: The header of a `generate_batch` message that lists its rows' ids (space-separated).
ROWS_HEADER = "rows"


def batch_message(messages: list[TaskMessage]) -> TaskMessage:
    """One `generate_batch` message for `generate` messages: `[[row id, stream], ...]`, each
    row followed by its start when its message carries one (`core.row_start`)."""
    rows = [[m.args[0], len(m.args) > 1 and bool(m.args[1]), *m.args[2:3]] for m in messages]
    request_ids = " ".join(m.headers.get("request_id", "") for m in messages)
    headers = {ROWS_HEADER: " ".join(str(r[0]) for r in rows), "request_id": request_ids}
    return TaskMessage(GENERATE_BATCH_TASK, [rows], str(uuid.uuid4()), headers)


@dataclass(eq=False)
class _Waiter:
    """A caller's `generate` message, waiting to be sent or to send."""

    message: TaskMessage
    woken: threading.Event = field(default_factory=threading.Event)  # sent, or to send next
    sent: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class _LoopQueue:
    """The messages of one event loop's callers waiting to be sent, and whether a send runs."""

    pending: list[tuple[TaskMessage, asyncio.Future[None]]] = field(default_factory=list)
    sending: asyncio.Task[None] | None = None


class CoalescingSender:
    """A `TaskSender` that folds `generate` tasks sent concurrently into one message; any other
    task passes straight through. Thread-safe. The caller that finds no send in flight sends one
    message, with whatever queued before it (its own included), then hands the sending on to
    the first caller still waiting; so nobody sends more than once, and a busy process never
    keeps one caller sending for the others."""

    def __init__(
        self,
        inner: TaskSender,
        *,
        max_rows: int,
        observe: Callable[[int], object] = lambda rows: None,
    ) -> None:
        """`observe(rows)` is told the rows of each message sent (a metric)."""
        self.inner = inner
        self.max_rows = max_rows
        self.observe = observe
        self._lock = threading.Lock()
        self._pending: list[_Waiter] = []
        self._sending = False
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = (
            weakref.WeakKeyDictionary()
        )

    async def send_async(self, message: TaskMessage) -> None:
        """`send` for a caller on the event loop: returns once its message is with the broker,
        raising what the broker raised for it."""
        if message.name != GENERATE_TASK:
            await run_sync(self.inner.send, message)
            return
        loop = asyncio.get_running_loop()
        queue = self._loops.setdefault(loop, _LoopQueue())
        sent: asyncio.Future[None] = loop.create_future()
        sent.add_done_callback(_retrieved)  # a caller that left leaves no warning behind
        queue.pending.append((message, sent))
        if queue.sending is None:
            queue.sending = asyncio.ensure_future(self._drain(queue))
        # Shielded: a caller that leaves does not unsend its row; the row still counts.
        await asyncio.shield(sent)

    async def _drain(self, queue: _LoopQueue) -> None:
        """Send the loop's waiting messages, up to `max_rows` per message, until none wait."""
        batch: list[tuple[TaskMessage, asyncio.Future[None]]] = []
        try:
            while queue.pending:
                batch = queue.pending[: self.max_rows]
                del queue.pending[: self.max_rows]
                messages = [m for m, _ in batch]
                error: BaseException | None = None
                try:
                    one = messages[0] if len(messages) == 1 else batch_message(messages)
                    await run_sync(self.inner.send, one)
                    self.observe(len(messages))
                except Exception as exc:  # every caller of this message learns it
                    error = exc
                for _, sent in batch:
                    if sent.done():
                        continue
                    if error is None:
                        sent.set_result(None)
                    else:
                        sent.set_exception(error)
        finally:
            queue.sending = None
            for _, sent in batch + queue.pending:  # cancelled mid-send: the loop is closing
                sent.cancel()
            queue.pending.clear()

    def send(self, message: TaskMessage) -> None:
        if message.name != GENERATE_TASK:
            self.inner.send(message)
            return
        me = _Waiter(message)
        with self._lock:
            self._pending.append(me)
            leads, self._sending = not self._sending, True
        if not leads:
            me.woken.wait()  # sent by another caller, or asked to send
        if not me.sent:
            self._send_next()
        if me.error is not None:
            raise me.error  # what the broker raised for this row's message

    def _send_next(self) -> None:
        """Send the waiting messages (the caller's own first among them) as one, then pass the
        sending to the next waiting caller, or stand down."""
        with self._lock:
            batch = self._pending[: self.max_rows]
            del self._pending[: self.max_rows]
        messages = [w.message for w in batch]
        error: BaseException | None = None
        try:
            self.inner.send(messages[0] if len(messages) == 1 else batch_message(messages))
            self.observe(len(messages))
        except BaseException as exc:  # every caller of this message learns it
            error = exc
        with self._lock:
            if self._pending:
                self._pending[0].woken.set()  # the next caller sends
            else:
                self._sending = False
        for waiter in batch:
            waiter.sent, waiter.error = True, error
            waiter.woken.set()


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def batch_rows(rows: list[list[Any]]) -> list[QueuedRow]:
    """The rows of a `generate_batch` message (its argument, as `batch_message` writes it)."""
    return [QueuedRow.from_args(*row) for row in rows]
