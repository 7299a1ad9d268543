"""The event loop's PostgreSQL connections: reused, bounded, and a wait for one that never comes
back ends in `ConnectionsExhausted` (the API's 503), not a hang."""

from __future__ import annotations

import asyncio

import pytest

from db import async_connections
from db.async_connections import AsyncConnections, ConnectionsExhausted


def test_a_connection_is_reused_and_the_set_is_bounded(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(async_connections, "CONNECT_TIMEOUT_SECONDS", 0.3)

    async def scenario() -> None:
        connections = AsyncConnections(pg_url, size=1)
        async with connections.connection() as first:
            assert (await (await first.execute("SELECT 1")).fetchone()) == (1,)
            with pytest.raises(ConnectionsExhausted):  # the only one is in use
                async with connections.connection():
                    pass

            async def later() -> object:
                async with connections.connection() as conn:
                    return conn

            waiting = asyncio.ensure_future(later())  # waits for the one in use
            await asyncio.sleep(0.05)
            assert not waiting.done()
        assert await waiting is first  # handed on once it came back
        async with connections.connection() as again:
            assert again is first
        await connections.aclose()

    asyncio.run(scenario())
