"""Live keys an API process has read, for the routes whose one write confirms the key.

A generation's submission needs its key (who, which tenant, its quotas) before it writes its
row, and the row's insert confirms in the same statement that the key is still as it was read:
not revoked, its tenant active, its quotas unchanged (`db.repositories.generation_insert`). So
the submission routes may take the key from here instead of a PostgreSQL round trip of their
own (a tenth of the API's and PostgreSQL's CPU per request). A revocation, a deactivation or a
quota change still takes effect at once in every process: the next insert writes nothing, and
the route reads the key again (`api.deps.confirmed_principal`). No message between processes
is needed, and none can be lost. Every other route reads its key each time.

Entries are found by the presented key's digest (no plaintext is kept) and are read again after
`REFRESH_SECONDS`, so `last_used_at` keeps being touched (`TOUCH_INTERVAL`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from db.repositories.tenants import TOUCH_INTERVAL, LiveKey

#: Half the touch interval: a key in use has `last_used_at` within 1.5 intervals of its use.
REFRESH_SECONDS = TOUCH_INTERVAL.total_seconds() / 2
#: The most keys kept; past it the oldest entry leaves (a bound, not a working-set policy).
MAX_ENTRIES = 10_000


class KeyCache:
    """Live keys by digest, each kept `refresh_seconds` from when it was read."""

    def __init__(
        self,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._keys: dict[str, tuple[float, LiveKey]] = {}

    def get(self, digest: str) -> LiveKey | None:
        """The key read under `digest` less than `refresh_seconds` ago, or None."""
        found = self._keys.get(digest)
        if found is None:
            return None
        read_at, key = found
        if self._clock() - read_at >= self.refresh_seconds:
            del self._keys[digest]
            return None
        return key

    def put(self, digest: str, key: LiveKey) -> None:
        """Keep `key`, just read live from the database, under the digest it was presented as."""
        self._keys.pop(digest, None)  # re-inserted last: the oldest entry stays first
        if len(self._keys) >= self.max_entries:
            del self._keys[next(iter(self._keys))]
        self._keys[digest] = (self._clock(), key)

    def drop(self, digest: str) -> None:
        self._keys.pop(digest, None)

    def __len__(self) -> int:
        return len(self._keys)
