"""Pushed results on real Redis: a waiter reads the row once, then only when notified."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import event
from sqlalchemy.engine import Engine

from core.settings import Settings
from db.models import Generation
from db.repositories.generations import Succeeded, mark_many_succeeded, mark_running
from db.session import create_session_factory, session_scope
from services.final_notifications import FinalNotifications
from services.generation_events import FINAL_CHANNEL, final_message
from services.generations import read_generation, wait_for_final
from tests.api.conftest import TEST_BROKER
from tests.db.factories import make_generation, make_policy, make_tenant


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


def test_a_notification_that_carries_the_row_spares_the_waiter_its_read(
    api_settings: Settings,
) -> None:
    """The worker publishes the row as its transaction wrote it; the woken waiter answers with
    it, reading nothing, and it is the row a read would give."""
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with session_scope(factory) as session:
        tenant, _ = make_tenant(session)
        generation = make_generation(session, tenant, make_policy(session, tenant))
        mark_running(session=session, generation_id=generation.id)
        done = Succeeded(
            generation_id=generation.id,
            output="Nairobi.",
            refused=False,
            refusal_category=None,
            probabilities={"safety": 0.01},
            summary={"s": [0.5], "m": 1.0, "L": {}},
            prompt_tokens=9,
            completion_tokens=3,
        )
        written = mark_many_succeeded(session=session, rows=[done])
        gid = generation.id
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    async def scenario() -> Generation:
        client = aioredis.Redis.from_url(TEST_BROKER)
        notifications = FinalNotifications(client)
        await notifications.start()
        await asyncio.wait_for(notifications.subscribed.wait(), 10)
        await asyncio.sleep(0.05)  # past the wake-up that follows subscribing
        async with notifications.watching(gid) as woken:
            await client.publish(FINAL_CHANNEL, final_message(gid, written[gid]))
            row = await wait_for_final(factory, notifications, gid, 30, woken=woken)
        await notifications.stop()
        await client.aclose()
        return row

    event.listen(Engine, "before_cursor_execute", record)
    try:
        carried = asyncio.run(scenario())
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert statements == []
    read = read_generation(factory, gid)
    assert carried.status == "succeeded" and carried.output == "Nairobi."
    for column in Generation.__table__.columns:
        if column.computed is None:
            assert getattr(carried, column.key) == getattr(read, column.key), column.key
