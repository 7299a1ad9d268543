"""Sliding one-minute windows kept in Redis, so one quota holds across every API process.

Two uses: each tenant's requests per minute (generation submissions), and failed
authentications per client address. A window is a sorted set of event timestamps under one key
per tenant or address; a Lua script trims it, counts and adds in one atomic step using the
Redis server's clock, so processes on different hosts agree. Keys expire with their window, and
one tenant's flood only ever fills its own key.
"""

from __future__ import annotations

import logging
import math
import uuid

import redis

from api.errors import ApiError

WINDOW_SECONDS = 60.0
log = logging.getLogger("rcs.api")

# KEYS[1]: the window. ARGV: window seconds, limit, add (1: count this event, 0: only look).
# Returns {allowed (1/0), seconds until the oldest event leaves the window}.
_SLIDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + window - now)}
end
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
return {1, '0'}
"""


class RateLimiter:
    """Per-tenant request quotas and the per-address failed-authentication throttle."""

    def __init__(self, redis_url: str, *, prefix: str = "rcs:limit") -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._slide = self._redis.register_script(_SLIDE)
        self._prefix = prefix

    def _retry_after(self, key: str, limit: int, *, add: bool) -> int | None:
        """Seconds to wait when the window at `key` holds `limit` events, else None."""
        try:
            allowed, wait = self._slide(
                keys=[f"{self._prefix}:{key}"],
                args=[WINDOW_SECONDS, limit, "1" if add else "0", uuid.uuid4().hex],
            )
        except redis.RedisError as exc:
            # Quotas protect capacity; an unreachable Redis must not refuse every request.
            log.warning("rate limit not checked, Redis unavailable: %s", exc)
            return None
        return None if int(allowed) else max(1, math.ceil(float(wait)))

    def check(self, tenant_id: uuid.UUID, per_minute: int) -> None:
        """Count one request of this tenant, or raise 429 with `Retry-After` when it is over."""
        retry = self._retry_after(f"tenant:{tenant_id}", per_minute, add=True)
        if retry is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"quota of {per_minute} requests per minute reached",
                headers={"Retry-After": str(retry)},
            )

    def check_authentication(self, address: str, failures_per_minute: int) -> None:
        """Raise 429 when this address failed to authenticate too often in the last minute."""
        retry = self._retry_after(f"auth:{address}", failures_per_minute, add=False)
        if retry is not None:
            raise ApiError(
                429,
                "too_many_failed_authentications",
                f"more than {failures_per_minute} failed authentications per minute from this "
                "address",
                headers={"Retry-After": str(retry)},
            )

    def record_failed_authentication(self, address: str) -> None:
        # The limit only bounds what is stored; `check_authentication` decides.
        self._retry_after(f"auth:{address}", 1_000_000, add=True)

    def close(self) -> None:
        self._redis.close()
