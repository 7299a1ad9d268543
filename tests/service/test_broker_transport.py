"""The broker transport: kombu's Redis transport, with one client per channel for every publish
and acknowledgement, on a real Redis."""

from __future__ import annotations

import redis
from kombu import Connection

from core.queue import BROKER_TRANSPORT
from services.broker_transport import Channel
from tests import servers

BROKER = servers.redis_url(6)


def test_publish_and_ack_share_one_client_and_leave_nothing_unacked() -> None:
    redis.Redis.from_url(BROKER).flushdb()
    made: list[object] = []
    create = Channel._create_client

    def counting(self: Channel, asynchronous: bool = False) -> object:
        client = create(self, asynchronous)
        if not asynchronous:
            made.append(client)
        return client

    Channel._create_client = counting  # type: ignore[method-assign]  # counts the real calls
    try:
        with Connection(BROKER, transport=BROKER_TRANSPORT) as connection:
            queue = connection.SimpleQueue("transport-test")
            for i in range(5):
                queue.put({"n": i})
            got = []
            for _ in range(5):
                message = queue.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
            queue.close()
    finally:
        Channel._create_client = create  # type: ignore[method-assign]
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert made and len(made) <= 2  # one per channel (kombu made one per publish and per ack)
    leftover = redis.Redis.from_url(BROKER)
    assert leftover.hlen("unacked") == 0 and leftover.llen("transport-test") == 0
