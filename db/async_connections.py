"""A few PostgreSQL connections for the running event loop: statements awaited, no thread.

The API's sessions (SQLAlchemy, synchronous) run in worker threads, and a hop to a thread cost
the API process about as much CPU as the short statement it carried (`bench/thread_hops.py`).
The statements on every request's path (the key lookup) run here instead, on psycopg's
`AsyncConnection` in autocommit mode. Connections belong to the loop that opened them, so a new
loop (a bare `TestClient` runs each request on one) starts a new set. As with the synchronous
pool (`db.session`), a connection idle for over `PING_IDLE_SECONDS` is pinged before use and
replaced if dead, and a broken one is dropped: a database that restarts fails the statements in
flight (the API answers 503 with Retry-After), not the ones after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import psycopg
from sqlalchemy.engine import make_url

from db.session import PING_IDLE_SECONDS

#: Seconds to wait for a connection (opening one, or one of `size` to come back).
CONNECT_TIMEOUT_SECONDS = 5


class ConnectionsExhausted(psycopg.OperationalError):
    """No connection came back within `CONNECT_TIMEOUT_SECONDS`: overloaded for a moment."""


def libpq_url(sqlalchemy_url: str) -> str:
    """`postgresql+psycopg://...` as psycopg itself takes it."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class AsyncConnections:
    """Up to `size` connections of the running event loop (module docstring)."""

    def __init__(self, sqlalchemy_url: str, *, size: int) -> None:
        self._url = libpq_url(sqlalchemy_url)
        self._size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[tuple[psycopg.AsyncConnection, float]] = []  # (connection, since)
        self._slots = asyncio.Semaphore(size)

    def _for_running_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the old loop's connections are unusable here
            self._loop, self._idle, self._slots = loop, [], asyncio.Semaphore(self._size)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for a few statements; back to the idle set afterwards unless broken."""
        self._for_running_loop()
        slots = self._slots
        if slots.locked():  # every connection in use: wait for one, within the timeout
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await slots.acquire()
            except TimeoutError:
                raise ConnectionsExhausted("no database connection came back in time") from None
        else:  # a free slot is taken at once: no timer, no task (the usual case)
            await slots.acquire()
        try:
            conn = await self._take()
            try:
                yield conn
            except Exception as exc:
                if isinstance(exc, psycopg.Error) or conn.broken:  # its state is unknown
                    await _close_quietly(conn)
                else:  # the caller's own error (autocommit: no transaction is left open)
                    self._idle.append((conn, time.monotonic()))
                raise
            except BaseException:  # cancelled, perhaps mid-statement
                await _close_quietly(conn)
                raise
            self._idle.append((conn, time.monotonic()))
        finally:
            slots.release()

    async def _take(self) -> psycopg.AsyncConnection:
        """The most recently used idle connection (pinged if idle for long), or a new one."""
        while self._idle:
            conn, since = self._idle.pop()
            if time.monotonic() - since < PING_IDLE_SECONDS:
                return conn
            try:
                await conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                await _close_quietly(conn)
        return await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )

    async def aclose(self) -> None:
        """Close the idle connections (those of the running loop; others die with theirs)."""
        idle, self._idle = self._idle, []
        if self._loop is asyncio.get_running_loop():
            for conn, _ in idle:
                await _close_quietly(conn)


async def _close_quietly(conn: psycopg.AsyncConnection) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()
