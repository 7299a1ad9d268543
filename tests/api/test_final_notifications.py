"""Pushed results on real Redis: a waiter reads the row once, then only when notified."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from services.final_notifications import FinalNotifications
from services.generation_events import FINAL_CHANNEL
from tests.api.conftest import TEST_BROKER


def test_a_waiter_reads_once_and_again_only_when_its_id_is_notified() -> None:
    async def scenario() -> tuple[int, str, int]:
        client = aioredis.Redis.from_url(TEST_BROKER)
        notifications = FinalNotifications(client)
        await notifications.start()
        mine, other = uuid.uuid4(), uuid.uuid4()
        reads = 0
        state = "running"

        async def read() -> str:
            nonlocal reads
            reads += 1
            return state

        await asyncio.wait_for(notifications.subscribed.wait(), 10)
        await asyncio.sleep(0.05)  # past the wake-up that follows subscribing
        waiter = asyncio.create_task(
            notifications.wait_until(mine, read, lambda s: s == "succeeded", timeout=30)
        )
        await client.publish(FINAL_CHANNEL, str(other))  # someone else's row: no read
        await asyncio.sleep(0.3)
        reads_before = reads
        state = "succeeded"
        await client.publish(FINAL_CHANNEL, str(mine))
        result = await asyncio.wait_for(waiter, 10)
        await notifications.stop()
        await client.aclose()
        return reads_before, result, reads

    reads_before, result, reads = asyncio.run(scenario())
    assert reads_before == 1
    assert result == "succeeded" and reads == 2


def test_a_waiter_registered_before_its_row_reads_only_after_the_notification() -> None:
    """`submit_and_wait`'s order: register, write the row, wait. A notification published
    before the wait starts (a fast worker) is not missed, and nothing is read before it."""

    async def scenario() -> tuple[int, str, int]:
        client = aioredis.Redis.from_url(TEST_BROKER)
        notifications = FinalNotifications(client)
        await notifications.start()
        await asyncio.wait_for(notifications.subscribed.wait(), 10)
        await asyncio.sleep(0.05)  # past the wake-up that follows subscribing
        mine = uuid.uuid4()
        reads = 0

        async def read() -> str:
            nonlocal reads
            reads += 1
            return "succeeded"

        async with notifications.watching(mine) as woken:
            await client.publish(FINAL_CHANNEL, str(mine))  # the worker finished already
            await asyncio.wait_for(woken.wait(), 10)
            reads_before = reads
            result = await notifications.wait_until(
                mine, read, lambda s: s == "succeeded", timeout=30, woken=woken
            )
        await notifications.stop()
        await client.aclose()
        return reads_before, result, reads

    reads_before, result, reads = asyncio.run(scenario())
    assert reads_before == 0
    assert result == "succeeded" and reads == 1
