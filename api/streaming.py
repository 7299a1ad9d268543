"""Token streaming: a generation's Redis stream (`services.generation_events`) read as it grows.

`open_stream` waits for the stream's first entry before the HTTP response starts, so a request
that fails before its first token still gets a plain HTTP error, and one whose generation has
not started in time gets whatever its route answers then (`StreamNotStarted`). `events` then
yields the decision and the text pieces until the row is final; the finished text comes from
the row (the record), so whatever the stream missed (or wrote twice, after a redelivery) is
made up from it. A client that disconnects only stops this reader: the row goes on in the
worker and is recorded as usual.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import cast

import redis.asyncio as aioredis
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError
from core.queue import INPUT_TOO_LONG
from db.models import Generation
from services.generation_events import GenerationEvent, stream_key
from services.generations import read_generation

#: XREAD's reply: per stream, its key and its (entry id, fields) entries.
StreamReply = list[tuple[bytes, list[tuple[bytes | str, dict[bytes, bytes]]]]]

#: Longest single blocking read; between reads the deadline is checked.
BLOCK_MS = 5000


@dataclass
class GenerationStream:
    """A reader of one generation's stream, positioned after the entries already consumed."""

    client: aioredis.Redis
    generation_id: uuid.UUID
    deadline: float
    load_row: Callable[[], Generation]
    first: GenerationEvent | None = None
    sent: str = ""  # text passed on so far
    _last_id: str = "0-0"
    _pending: list[GenerationEvent] = field(default_factory=list)

    async def _next(self) -> GenerationEvent | None:
        """The next entry, or None at the deadline."""
        key = stream_key(self.generation_id)
        while not self._pending:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return None
            # redis-py annotates every reply as the union of all its commands' replies.
            found = cast(
                StreamReply | None,
                await self.client.xread(
                    {key: self._last_id}, block=max(1, min(BLOCK_MS, int(left * 1000)))
                ),
            )
            for _key, entries in found or []:
                for entry_id, raw in entries:
                    self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    self._pending.append(GenerationEvent.from_fields(raw))
        return self._pending.pop(0)

    async def final_row(self) -> Generation:
        return await run_in_threadpool(self.load_row)

    async def events(self) -> AsyncIterator[GenerationEvent]:
        """Text pieces after `first`, ending with a `final` event; stops at the deadline."""
        restarted = False
        while (event := await self._next()) is not None:
            if event.type == "decision":
                restarted = True  # a redelivered row starts over: its text comes from the row
            elif event.type == "text" and not restarted:
                self.sent += event.text
                yield event
            elif event.type == "final":
                yield event
                return


class StreamNotStarted(Exception):
    """The generation wrote nothing to its stream before the caller's timeout (it is still
    queued or starting, and goes on)."""

    def __init__(self, generation_id: uuid.UUID, timeout: float) -> None:
        super().__init__(
            f"generation {generation_id} did not start within {timeout:.0f}s; "
            f"poll /v1/generations/{generation_id}"
        )


async def open_stream(
    client: aioredis.Redis,
    factory: sessionmaker[Session],
    generation_id: uuid.UUID,
    timeout: float,
) -> GenerationStream:
    """Wait for the first entry; `StreamNotStarted` when none comes in time, the row's error
    when it failed."""

    stream = GenerationStream(
        client,
        generation_id,
        time.monotonic() + timeout,
        partial(read_generation, factory, generation_id),
    )
    stream.first = await stream._next()
    if stream.first is None:
        raise StreamNotStarted(generation_id, timeout)
    if stream.first.type == "final":
        row_error(await stream.final_row())
    return stream


def row_error(row: Generation) -> None:
    """Raise the HTTP error of a final row that did not succeed; an input that did not fit the
    model's context is the caller's 422, not the server's 502."""
    if row.status == "failed" and (row.error or "").startswith(INPUT_TOO_LONG):
        message = (row.error or "").removeprefix(INPUT_TOO_LONG)
        raise ApiError(422, "validation_error", message, field="messages")
    if row.status != "succeeded":
        raise ApiError(
            502 if row.status == "failed" else 409,
            row.status,
            row.error or f"generation {row.status}",
        )


def sse(data: str, event: str | None = None) -> str:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n"
