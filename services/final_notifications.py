"""Pushed results: synchronous waits are woken by the worker's Redis notification, not polling.

One pub/sub subscription per API process (`FINAL_CHANNEL`) wakes the waiters of the ids it
names. A waiter registers before it reads the row, so a notification published between the
worker's commit and the registration is never lost: the read sees the final row. The database
stays the record: a notification that carries the row as the worker's committed transaction
wrote it (`take_row`) spares the woken waiter its read; one without reads the row. If the
subscription drops, every waiter is woken to re-read, and a waiter also re-reads every
`RECHECK_SECONDS` in case a notification was missed (a worker that could not publish), the
only database cost of a long wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from services.generation_events import FINAL_CHANNEL, parse_final

log = logging.getLogger(__name__)
RECHECK_SECONDS = 30.0
T = TypeVar("T")


class FinalNotifications:
    """The process's subscription and its waiters (one `asyncio.Event` per waited id)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._rows: dict[uuid.UUID, dict[str, Any]] = {}  # final rows carried by notifications
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set while the subscription is live
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="final-notifications")

    async def stop(self) -> None:
        """Cancel the listener until it is done: redis-py can swallow a cancellation that lands
        inside its connection code (the listener then resubscribed, and an app's shutdown
        waited for it forever, seen once in a test's TestClient exit)."""
        if self._task is None:
            return
        self._stopping = True
        while not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            self._task.result()

    @contextlib.asynccontextmanager
    async def watching(self, generation_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters.setdefault(generation_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(generation_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(generation_id, None)
                self._rows.pop(generation_id, None)

    def take_row(self, generation_id: uuid.UUID) -> dict[str, Any] | None:
        """The final row a notification carried for a watched id (as the worker's committed
        transaction wrote it), once; None if none came."""
        return self._rows.pop(generation_id, None)

    async def wait_until(
        self,
        generation_id: uuid.UUID,
        read: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        timeout: float,
        *,
        woken: asyncio.Event | None = None,
    ) -> T:
        """`read()` until `done` or `timeout`: once, then after each notification for the id.
        With `woken`, the event of a waiter registered (`watching`) before the row could
        finish, the first read waits for a notification (or the recheck)."""
        deadline = time.monotonic() + timeout
        async with contextlib.AsyncExitStack() as stack:
            pending = woken is not None  # nothing can be final before its notification
            if woken is None:
                woken = await stack.enter_async_context(self.watching(generation_id))
            while True:
                if not pending:
                    woken.clear()
                    value = await read()
                    if done(value) or deadline - time.monotonic() <= 0:
                        return value
                pending = False
                left = max(0.0, deadline - time.monotonic())
                # A timeout scope, not `wait_for`: no task of its own per wait (Python 3.11).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, RECHECK_SECONDS)):
                        await woken.wait()

    def _wake(self, generation_id: uuid.UUID | None = None) -> None:
        targets = (
            self._waiters.values()
            if generation_id is None
            else [self._waiters.get(generation_id, set())]
        )
        for events in targets:
            for event in events:
                event.set()

    async def _listen(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(FINAL_CHANNEL)
                    self.subscribed.set()
                    self._wake()  # (re)subscribed: whatever was missed is re-read
                    delay = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                self.subscribed.clear()
                log.exception("final-notification subscription lost; resubscribing")
                self._wake()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _on_message(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        try:
            generation_id, row = parse_final(text)
        except ValueError:
            log.warning("ignoring a malformed final notification: %r", text[:80])
            return
        if row is not None and generation_id in self._waiters:
            self._rows[generation_id] = row
        self._wake(generation_id)
