"""Generation events in Redis: a finished row's notification and a streamed row's tokens.

The database stays the record; Redis only says *when* to read it and carries tokens early.

* `FINAL_CHANNEL` (pub/sub): published by the worker after the transaction that made the row
  final has committed: the generation id, or `{"id": ..., "row": {...}}` with the row as that
  transaction wrote it (`row_to_json`), so that a woken waiter answers without reading it. Each
  API process holds one subscription for all its synchronous waiters
  (`services/final_notifications.py`), so waiting costs the database nothing.
* `stream_key(id)` (a Redis stream, only for rows submitted with `stream: true`): entries with
  a `type` field, in order — `decision` (category, first-token probabilities), `text` (a piece
  of the answer), and `final` (after the commit, like the notification). The worker pipelines
  the entries of one decode step; the key expires `stream_ttl_seconds` after its last entry.
  A row redelivered after a lost worker writes its entries again: readers keep to the first
  `decision` and take the finished text from the row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.client
from redis.typing import EncodableT, FieldT

FINAL_CHANNEL = "rcs:generations:final"
EventType = Literal["decision", "text", "final"]


def stream_key(generation_id: uuid.UUID | str) -> str:
    return f"rcs:generation:{generation_id}:events"


@dataclass(frozen=True)
class GenerationEvent:
    """One entry of a generation's stream."""

    type: EventType
    text: str = ""
    category: str | None = None  # decision: the refusing category, None when it responds
    probabilities: Mapping[str, float] | None = None  # decision: p_c per category

    def fields(self) -> dict[FieldT, EncodableT]:
        out: dict[FieldT, EncodableT] = {"type": self.type}
        if self.type == "text":
            out["text"] = self.text
        if self.type == "decision":
            out["category"] = self.category or ""
            out["probabilities"] = json.dumps(dict(self.probabilities or {}))
        return out

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> GenerationEvent:
        f = {_text(k): _text(v) for k, v in raw.items()}
        kind = f.get("type")
        if kind == "decision":
            return cls(
                "decision",
                category=f.get("category") or None,
                probabilities=json.loads(f.get("probabilities") or "{}"),
            )
        if kind == "text":
            return cls("text", text=f.get("text", ""))
        return cls("final")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def append_events(
    pipe: redis.client.Pipeline, events: Sequence[tuple[str, GenerationEvent]], ttl: int
) -> None:
    """Queue XADDs (and one EXPIRE per stream) on a Redis pipeline; the caller executes it."""
    touched = []
    for generation_id, event in events:
        key = stream_key(generation_id)
        pipe.xadd(key, event.fields())
        if key not in touched:
            touched.append(key)
    for key in touched:
        pipe.expire(key, ttl)


def final_message(generation_id: uuid.UUID | str, row: str | None = None) -> str:
    """A `FINAL_CHANNEL` message: the id, with the row's JSON as written when given."""
    return str(generation_id) if row is None else f'{{"id": "{generation_id}", "row": {row}}}'


def parse_final(text: str) -> tuple[uuid.UUID, dict[str, Any] | None]:
    """(id, the row as written, or None) of a `FINAL_CHANNEL` message; `ValueError` if
    malformed."""
    if not text.startswith("{"):
        return uuid.UUID(text), None
    try:
        message = json.loads(text)
        row = message["row"]
        if not isinstance(row, dict):
            raise TypeError("row is not an object")
        return uuid.UUID(message["id"]), row
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from exc


def publish_final(
    client: redis.Redis,
    finals: Sequence[tuple[uuid.UUID | str, bool]],
    *,
    ttl: int,
    rows: Mapping[uuid.UUID, str] | None = None,
) -> None:
    """After the rows' final commit, in one round trip: end the streams of the streamed ones
    (`(id, streamed)` pairs) and notify waiters of each, with the row as written when `rows`
    holds it."""
    rows = rows or {}
    pipe = client.pipeline(transaction=False)
    ended = [(str(gid), GenerationEvent("final")) for gid, streamed in finals if streamed]
    append_events(pipe, ended, ttl)
    for gid, _ in finals:
        row = rows.get(gid) if isinstance(gid, uuid.UUID) else None
        pipe.publish(FINAL_CHANNEL, final_message(gid, row))
    pipe.execute()
