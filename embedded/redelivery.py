"""Give a dead worker's unacknowledged messages back to their queues at once.

With `acks_late`, kombu's Redis transport keeps each delivered message in an `unacked` hash
until the worker acknowledges it, and only restores it after `visibility_timeout` (an hour by
default, so that a slow task is never run twice). The supervisor knows better than a timeout:
it runs the only worker on this broker and has just seen it die, so every unacknowledged message
belonged to it and can go back now.
"""

from __future__ import annotations

import logging

from kombu import Connection

log = logging.getLogger("rcs.supervisor")
RESTORE_LIMIT = 1_000_000


def restore_unacked(broker_url: str) -> int:
    """Requeue every unacknowledged message; returns how many there were."""
    options = {"visibility_timeout": 0}
    with Connection(broker_url, transport_options=options, connect_timeout=2) as connection:
        channel = connection.default_channel
        client = channel.client
        pending = int(client.zcard(channel.unacked_index_key))
        if pending:
            channel.qos.restore_visible(start=0, num=RESTORE_LIMIT)
        left = int(client.zcard(channel.unacked_index_key))
    if pending:
        log.warning("requeued %d message(s) a dead worker had not acknowledged", pending - left)
    return pending - left
