"""The engine loop: one thread owns the model and a `RunningBatch`; any thread submits requests.

Between two decode steps the loop admits waiting requests (fairly across tenants, `FairQueue`)
while the batch has room — at most `max_rows` rows and `max_kv_tokens` cache tokens reserved
(prompt plus budget per row; a single request larger than that still runs, alone) — prefills
them, then decodes one step for every row. Admission order alone cannot help a tenant that
arrives when another fills every row (it would wait for a row to finish), so the last
`max_rows // 4` rows (at least one) are kept for tenants holding less than their share of the
rows (`max_rows * share / sum of shares` over the tenants seen in the last
`SHARE_WINDOW_SECONDS`); a tenant alone, or under its share, may use every row.

A running batch gathers joiners before it admits them: every admission is a prefill pass and a
merge of caches whose cost is mostly per pass, not per row, so one admission per step of one or
two rows each spent as much of the tiny model's loop as its decode steps. With `admit_fraction`
f > 0 and `admit_wait` w, a batch of B running rows admits once max(1, floor(f * B)) requests
wait, or the first of them has waited w seconds; an empty batch admits at once, so a lone
request never waits (docs/scaling.md, session 26). f = 0 admits between every two steps.

A row that is done resolves its `Future`; each step's
events of the rows submitted with a `stream_to` name go to `on_events` as (name, event) pairs,
called on the loop thread (keep it cheap: put them on a queue). A step that raises fails the rows it held, and the loop goes on.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass

from core.settings import Settings
from workers.engine.admission import FairQueue
from workers.engine.batch import Engine
from workers.engine.continuous import Joining, RowEvent, RunningBatch
from workers.engine.types import GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

EventSink = Callable[[list[tuple[str, RowEvent]]], None]
#: Tenants seen this recently count when the rows are shared out.
SHARE_WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class _Waiting:
    joining: Joining
    future: Future[GenerationResult]
    stream_to: str | None
    tenant: Hashable


class EngineClosed(RuntimeError):
    """The loop stopped before the request finished."""


class EngineLoop:
    """Continuous batching on a thread; `submit` returns a `Future` of the row's result."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_rows: int,
        max_kv_tokens: int,
        on_events: EventSink | None = None,
        admit_fraction: float = 0.0,
        admit_wait: float = 0.0,
    ) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self.max_kv_tokens = max_kv_tokens
        self.admit_fraction = admit_fraction
        self.admit_wait = admit_wait
        self._waiting_since = 0.0  # when the queue last went from empty to not
        self.on_events = on_events
        self.batch = RunningBatch(engine.loaded)
        self._queue: FairQueue[_Waiting] = FairQueue()
        self._running: dict[int, _Waiting] = {}
        self._rows_of: Counter[Hashable] = Counter()  # running rows per tenant
        self._seen: dict[Hashable, tuple[float, float]] = {}  # tenant -> (share, last submit)
        self.reserved_rows = max(1, max_rows // 4) if max_rows > 1 else 0
        self._keys = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()

    def submit(
        self,
        request: GenerationRequest,
        *,
        tenant: Hashable = "",
        share: float = 1.0,
        stream_to: str | None = None,
    ) -> Future[GenerationResult]:
        """Queue a request; raises `RequestTooLong` at once when it cannot fit the context."""
        encoded = self.engine.loaded.encode(request.prompt)  # on the caller's thread
        self.engine.check(request, encoded)
        future: Future[GenerationResult] = Future()
        waiting = _Waiting(Joining(next(self._keys), request, encoded), future, stream_to, tenant)
        with self._wake:
            if self._closed:
                raise EngineClosed("the engine loop is closed")
            self._seen[tenant] = (share, time.monotonic())
            if not len(self._queue):
                self._waiting_since = time.monotonic()
            self._queue.push(tenant, waiting, cost=waiting.joining.kv_tokens, share=share)
            self._wake.notify()
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Stop admitting, fail whatever waits, and stop the thread after its current step."""
        with self._wake:
            self._closed = True
            left = self._queue.remove(lambda _: True)
            self._wake.notify()
        for waiting in left:
            waiting.future.set_exception(EngineClosed("the engine loop closed"))
        self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _fair_rows(self) -> dict[Hashable, float]:
        """Each recently seen tenant's share of the rows (called with the lock held)."""
        now = time.monotonic()
        for tenant, (_, seen) in list(self._seen.items()):
            if now - seen > SHARE_WINDOW_SECONDS and not self._rows_of[tenant]:
                del self._seen[tenant]
        total = sum(share for share, _ in self._seen.values()) or 1.0
        return {t: self.max_rows * share / total for t, (share, _) in self._seen.items()}

    def _gathering(self) -> bool:
        """Whether the waiting requests wait a step longer to join together (module docstring;
        called with the lock held)."""
        running, waiting = len(self.batch), len(self._queue)
        if not running or not waiting or self.admit_fraction <= 0:
            return False
        enough = waiting >= max(1, int(self.admit_fraction * running))
        return not enough and time.monotonic() - self._waiting_since < self.admit_wait

    def _admissible(self) -> list[_Waiting]:
        """Pop, in fair order, what fits the batch now (called with the lock held)."""
        rows, tokens = len(self.batch), self.batch.kv_tokens
        held = Counter(self._rows_of)
        fair = self._fair_rows()
        group: list[_Waiting] = []

        def fits(w: _Waiting) -> bool:
            if rows + len(group) >= self.max_rows:
                return False
            empty = rows + len(group) == 0  # an oversized request still runs, alone
            return empty or tokens + w.joining.kv_tokens <= self.max_kv_tokens

        def eligible(tenant: Hashable) -> bool:
            unreserved = rows + len(group) < self.max_rows - self.reserved_rows
            return unreserved or held[tenant] < fair.get(tenant, self.max_rows)

        while (w := self._queue.pop(fits, eligible)) is not None:
            group.append(w)
            held[w.tenant] += 1
            tokens += w.joining.kv_tokens
        return group

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not len(self._queue) and not len(self.batch):
                    self._wake.wait()
                if self._closed and not len(self.batch):
                    return
                group = [] if self._gathering() else self._admissible()
            for w in group:
                self._running[w.joining.key] = w
                self._rows_of[w.tenant] += 1
            try:
                events = self.batch.admit([w.joining for w in group])
                events += self.batch.step()
            except Exception as exc:  # the rows must fail with the reason, not hang
                log.exception("engine step failed; failing %d rows", len(self._running))
                self.batch.abandon()
                for w in self._running.values():
                    w.future.set_exception(exc)
                self._running.clear()
                self._rows_of.clear()
                continue
            self._deliver(events)

    def _deliver(self, events: list[RowEvent]) -> None:
        streamed = [
            (name, e) for e in events if (name := self._running[e.key].stream_to) is not None
        ]
        if streamed and self.on_events is not None:
            try:
                self.on_events(streamed)
            except Exception:  # streaming is best effort; the row and its record are not
                log.exception("publishing streamed tokens failed")
        for event in events:
            if event.result is not None:
                done = self._running.pop(event.key)
                self._rows_of[done.tenant] -= 1
                done.future.set_result(event.result)


def configured_loop(
    engine: Engine, settings: Settings, on_events: EventSink | None = None
) -> EngineLoop:
    """A loop bounded and admitting as `settings` say (the worker's, and the benchmark's
    in-process baseline)."""
    return EngineLoop(
        engine,
        max_rows=settings.max_batch_size,
        max_kv_tokens=settings.max_batch_tokens,
        on_events=on_events,
        admit_fraction=settings.admission_fraction,
        admit_wait=settings.admission_wait_ms / 1000,
    )
