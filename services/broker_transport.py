"""kombu's Redis transport with one shared client per channel.

kombu's `Channel.conn_or_acquire` builds a new `redis.Redis` client, on the channel's shared
connection pool, for every message it publishes and every message it acknowledges; building one
fills a table of several hundred response callbacks. Under load that was a fifth of a worker's
Python time (py-spy, 32 clients). A client is safe to share between threads (each command takes
a connection from the pool), so the channel keeps one, made again only if its pool is replaced.
Named by `core.queue.celery_config` (`broker_transport`), for the API's sender and the workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel
