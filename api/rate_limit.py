"""Per-tenant requests-per-minute quota: a sliding one-minute window per API process.

Several API processes each enforce the quota on their own share; a Redis counter is the
production step (docs/scaling.md).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque

from api.errors import ApiError

WINDOW_SECONDS = 60.0


class RateLimiter:
    def __init__(self) -> None:
        self._hits: dict[uuid.UUID, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, tenant_id: uuid.UUID, per_minute: int, *, now: float | None = None) -> None:
        """Count one request, or raise 429 with `Retry-After` when the window is full."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(tenant_id, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= per_minute:
                retry = max(1, math.ceil(hits[0] + WINDOW_SECONDS - now))
                raise ApiError(
                    429,
                    "rate_limited",
                    f"quota of {per_minute} requests per minute reached",
                    headers={"Retry-After": str(retry)},
                )
            hits.append(now)
