"""The API process's lifespan for generation events: its async Redis client (token streams) and
its one subscription to final notifications (`services.final_notifications`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI

from api.streaming import BLOCK_MS
from services.final_notifications import FinalNotifications

#: How much longer than a blocking read the API waits for Redis's answer.
READ_MARGIN_SECONDS = 5.0


@contextlib.asynccontextmanager
async def generation_events(app: FastAPI) -> AsyncIterator[None]:
    """App lifespan: the async Redis client (token streams) and the notification subscription."""
    # redis-py's default 5 s socket timeout would cut a stream read blocking `BLOCK_MS` (a 500
    # under load): reads may take that long, plus a margin for a busy server.
    client = aioredis.Redis.from_url(
        app.state.settings.redis_url, socket_timeout=BLOCK_MS / 1000 + READ_MARGIN_SECONDS
    )
    app.state.redis = client
    app.state.final_notifications = FinalNotifications(client)
    await app.state.final_notifications.start()
    try:
        yield
    finally:
        await app.state.final_notifications.stop()
        await client.aclose()
