"""Sliding one-minute windows kept in Redis, so one quota holds across every API process.

Two uses: each tenant's requests per minute (generation submissions), and failed
authentications per client address. A window is a sorted set of event timestamps under one key
per tenant or address; a Lua script trims it, counts and adds in one atomic step using the
Redis server's clock, so processes on different hosts agree. Keys expire with their window, and
one tenant's flood only ever fills its own key.

Checks run on the event loop (`redis.asyncio`): the same check handed to a worker thread cost
the API process two to three times the CPU (the hop's queue, wake-ups and GIL hand-overs;
measured with 32 concurrent checks).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

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


def _verdict(answer: list[int | bytes]) -> int | None:
    """The script's answer as seconds to wait, or None when the event is allowed."""
    allowed, wait = answer
    return None if int(allowed) else max(1, math.ceil(float(wait)))


def _over_quota(per_minute: int, retry: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"quota of {per_minute} requests per minute reached",
        headers={"Retry-After": str(retry)},
    )


def _blocked_address(failures_per_minute: int, retry: int) -> ApiError:
    return ApiError(
        429,
        "too_many_failed_authentications",
        f"more than {failures_per_minute} failed authentications per minute from this address",
        headers={"Retry-After": str(retry)},
    )


class RateLimiter:
    """Per-tenant request quotas and the per-address failed-authentication throttle, checked on
    the event loop."""

    def __init__(self, redis_url: str, *, prefix: str = "rcs:limit") -> None:
        self._url = redis_url
        self._prefix = prefix
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: aioredis.Redis | None = None
        self._slide: AsyncScript | None = None

    def _script(self) -> AsyncScript:
        """The script on a client of the running loop: an asyncio connection belongs to the loop
        that made it (one per process under uvicorn; an app served without its lifespan, as a
        bare `TestClient`, runs each request on a loop of its own)."""
        loop = asyncio.get_running_loop()
        if self._slide is None or self._loop is not loop:
            self._loop = loop
            self._redis = aioredis.Redis.from_url(
                self._url, socket_timeout=2, socket_connect_timeout=2
            )
            self._slide = self._redis.register_script(_SLIDE)
        return self._slide

    async def _retry_after(self, key: str, limit: int, *, add: bool) -> int | None:
        """Seconds to wait when the window at `key` holds `limit` events, else None."""
        try:
            answer = await self._script()(
                keys=[f"{self._prefix}:{key}"],
                args=[WINDOW_SECONDS, limit, "1" if add else "0", uuid.uuid4().hex],
            )
        except redis.RedisError as exc:
            # Quotas protect capacity; an unreachable Redis must not refuse every request.
            log.warning("rate limit not checked, Redis unavailable: %s", exc)
            return None
        return _verdict(answer)

    async def check(self, tenant_id: uuid.UUID, per_minute: int) -> None:
        """Count one request of this tenant, or raise 429 with `Retry-After` when it is over."""
        retry = await self._retry_after(f"tenant:{tenant_id}", per_minute, add=True)
        if retry is not None:
            raise _over_quota(per_minute, retry)

    async def check_authentication(self, address: str, failures_per_minute: int) -> None:
        """Raise 429 when this address failed to authenticate too often in the last minute."""
        retry = await self._retry_after(f"auth:{address}", failures_per_minute, add=False)
        if retry is not None:
            raise _blocked_address(failures_per_minute, retry)

    async def record_failed_authentication(self, address: str) -> None:
        # The limit only bounds what is stored; `check_authentication` decides.
        await self._retry_after(f"auth:{address}", 1_000_000, add=True)

    async def aclose(self) -> None:
        if self._redis is not None and self._loop is asyncio.get_running_loop():
            await self._redis.aclose()
        self._redis = self._slide = None
