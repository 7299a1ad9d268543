"""The API process's lifespan for generation events: its async Redis client (token streams) and
its one subscription to final notifications (`services.final_notifications`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI

from services.final_notifications import FinalNotifications


@contextlib.asynccontextmanager
async def generation_events(app: FastAPI) -> AsyncIterator[None]:
    """App lifespan: the async Redis client (token streams) and the notification subscription."""
    client = aioredis.Redis.from_url(app.state.settings.redis_url)
    app.state.redis = client
    app.state.final_notifications = FinalNotifications(client)
    await app.state.final_notifications.start()
    try:
        yield
    finally:
        await app.state.final_notifications.stop()
        await client.aclose()
