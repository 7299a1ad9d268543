"""What a worker needs to run a generation without reading its row first.

A generation that is not streamed travels with its row as the API wrote it and its tenant's
admission share (`RowStart`). The worker hands such a row to its engine as soon as the message
arrives, with no claim: the row goes from queued to succeeded in the recorder's one
transaction, which only moves a row still queued or running, so a row cancelled or finished
meanwhile (a redelivered message) is decoded and dropped, never written or counted twice. The
claim's transaction was 2 ms of a one-client request's 15 ms outside the engine. A row that
decodes for a while is still shown `running` (`workers.start_marks`). A row whose start would
make the message large is not carried, and a streamed row is claimed first (its tokens must not
reach a stream before the row is known to run); those, the first row of a policy version a
worker has not read yet, and the rows of re-sent messages are claimed, as before.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

#: A start larger than this (as JSON) stays in the database: messages stay small.
MAX_CARRIED_CHARS = 16_000


def tenant_share(quotas: Mapping[str, Any] | None) -> float:
    """A tenant's weight in fair admission: `quotas["share"]`, default 1 (equal shares)."""
    share = float((quotas or {}).get("share", 1.0))
    return share if share > 0 else 1.0


@dataclass(frozen=True)
class RowStart:
    """A queued row as the API wrote it (JSON, as `row_to_json` gives it) and its tenant's
    share."""

    row: dict[str, Any]
    share: float

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "share": self.share}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RowStart:
        return cls(row=dict(raw["row"]), share=float(raw["share"]))

    def carried(self) -> dict[str, Any] | None:
        """The start to put in the message, or None when it is too large to carry."""
        encoded = self.to_json()
        return encoded if len(json.dumps(encoded)) <= MAX_CARRIED_CHARS else None


class QueuedRow(NamedTuple):
    """A row a message names: its id, whether it is streamed, and its start if carried."""

    id: uuid.UUID
    stream: bool = False
    start: RowStart | None = None

    @classmethod
    def from_args(cls, row_id: object, stream: object = False, start: object = None) -> QueuedRow:
        """A row from a message's arguments (`[id]`, `[id, stream]` or `[id, stream, start]`).
        A start this code cannot read (another version's message) is ignored: the row is
        claimed and read from the database instead."""
        parsed = None
        if isinstance(start, Mapping):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                parsed = RowStart.from_json(start)
        return cls(uuid.UUID(str(row_id)), bool(stream), parsed)
