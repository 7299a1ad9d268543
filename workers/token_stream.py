"""Streams the tokens of streamed rows to Redis, off the engine loop's thread.

The loop hands each step's events of streamed rows to `TokenStreamPublisher.put` (a queue
append). A publisher thread turns them into text pieces (decoding each row's answer so far and
sending what is new, holding back an incomplete UTF-8 character) and writes every row's entries
of the waiting steps in one pipelined round trip. `flush` waits until what was put before it is
written, so the task writes its `final` entry after the last text.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

from redis import Redis

from core.categories import CATEGORIES
from services.generation_events import GenerationEvent, append_events
from workers.engine.continuous import RowEvent
from workers.engine.model import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class _RowText:
    ids: list[int] = field(default_factory=list)
    sent: str = ""


class TokenStreamPublisher:
    """See the module docstring; `redis` is a sync client, `ttl` the streams' lifetime."""

    def __init__(self, loaded: LoadedModel, redis: Redis, *, ttl: int) -> None:
        self.lm = loaded
        self.redis = redis
        self.ttl = ttl
        self._queue: queue.SimpleQueue[list[tuple[str, RowEvent]] | threading.Event] = (
            queue.SimpleQueue()
        )
        self._rows: dict[str, _RowText] = {}
        threading.Thread(target=self._run, name="token-stream", daemon=True).start()

    def put(self, events: list[tuple[str, RowEvent]]) -> None:
        self._queue.put(events)

    def flush(self, timeout: float = 2.0) -> None:
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get())
            out: list[tuple[str, GenerationEvent]] = []
            markers = []
            for item in items:
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    out += [(name, e) for name, ev in item for e in self._events(name, ev)]
            if out:
                try:
                    pipe = self.redis.pipeline(transaction=False)
                    append_events(pipe, out, self.ttl)
                    pipe.execute()
                except Exception:  # a lost stream must not stop the rows; they are recorded
                    log.exception("writing %d stream entries failed", len(out))
            for marker in markers:
                marker.set()

    def _events(self, name: str, event: RowEvent) -> list[GenerationEvent]:
        out = []
        if event.decision is not None:
            self._rows[name] = _RowText()
            probabilities = dict(zip(CATEGORIES, event.probabilities or (), strict=False))
            category = CATEGORIES[event.decision] if event.decision >= 0 else None
            out.append(GenerationEvent("decision", category=category, probabilities=probabilities))
        row = self._rows.get(name)
        if row is None:  # a row whose decision this process never saw
            return out
        row.ids.append(event.token)
        if event.result is not None:
            text = event.result.text
            del self._rows[name]
        else:
            text = self.lm.answer_text(row.ids)
            if text.endswith("\ufffd"):  # half a character: wait for the rest
                return out
        if text.startswith(row.sent) and len(text) > len(row.sent):
            out.append(GenerationEvent("text", text=text[len(row.sent) :]))
            row.sent = text
        return out
