"""A row whose task message the broker lost gets its task again, once, and counts once.

kombu's Redis transport loses a message when a worker dies between taking it off the queue and
recording it as unacknowledged; an API killed between its commit and its send loses one too.
Here the loss is made exact: the API's sender drops the message (or the test deletes it)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from kombu import Connection
from sqlalchemy import func, select

from api.app import create_app
from api.tasks_client import CeleryTaskSender
from core.queue import CALIBRATE_QUEUE, GENERATE_QUEUE
from core.settings import Settings
from db.models import FINAL_STATUSES, Generation, RefusalStat
from db.session import create_session_factory
from services.tasks import TaskMessage
from tests.api.conftest import RecordingSender, TenantKeys
from tests.api.live import IDLE_BROKER, submit_queued
from workers.lost_tasks import held_task_ids, resend_lost

pytestmark = pytest.mark.integration


def test_a_held_message_is_never_sent_again_and_a_lost_one_is(
    idle_broker: Settings, tenant_a: TenantKeys
) -> None:
    factory = create_session_factory(idle_broker.sqlalchemy_url)
    broker = redis.Redis.from_url(IDLE_BROKER)
    app = create_app(idle_broker, task_sender=CeleryTaskSender(idle_broker))
    with TestClient(app) as client:
        [gid] = submit_queued(client, tenant_a, 1)
    sent: list[tuple[str, list[Any], str]] = []
    resend = {
        "factory": factory,
        "client": broker,
        "send": lambda name, args, task_id: sent.append((name, args, task_id)),
        "recheck_seconds": 0.2,
    }
    # Queued: the message waits in its list, under the row's id.
    assert gid in held_task_ids(broker)
    assert resend_lost(**resend, grace_seconds=0) == 0

    # Delivered and not acknowledged: it is in `unacked`, still held.
    with Connection(IDLE_BROKER) as connection:
        message = connection.SimpleQueue(GENERATE_QUEUE).get(timeout=5)
        assert message.headers["id"] == gid
        assert resend_lost(**resend, grace_seconds=0) == 0

        # Lost (the worker died in between): sent again, but only once the grace has passed.
        broker.delete("unacked", "unacked_index")
        assert gid not in held_task_ids(broker)
        assert resend_lost(**resend, grace_seconds=3600) == 0
        assert resend_lost(**resend, grace_seconds=0) == 1
    assert [s[2] for s in sent] == [gid]
    assert sent[0][0] == "rcs.generate" and sent[0][1][0] == gid

    # Final rows are never sent again, whatever the broker holds.
    with factory.begin() as session:
        row = session.get(Generation, uuid.UUID(gid))
        assert row is not None
        row.status = "cancelled"
    assert resend_lost(**resend, grace_seconds=0) == 0

    # A calibration run's lost task comes back the same way.
    body = {
        "policy": "default",
        "targets": {"safety": 0.4},
        "prompts": [{"prompt": p} for p in "abcd"],
    }
    with TestClient(app) as client:
        response = client.post("/v1/calibrations", json=body, headers=tenant_a.headers())
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    assert resend_lost(**resend, grace_seconds=0) == 0
    broker.delete(CALIBRATE_QUEUE)
    assert resend_lost(**resend, grace_seconds=0) == 1
    assert sent[-1] == ("rcs.calibrate", [run_id], run_id)


def test_lost_generations_are_decoded_and_counted_once(
    e2e_settings: Settings, running_worker: Path, tenant_b: TenantKeys
) -> None:
    app = create_app(e2e_settings, task_sender=RecordingSender())  # sends nothing: all lost
    with TestClient(app) as client:
        lost = set(submit_queued(client, tenant_b, 3))
    factory = create_session_factory(e2e_settings.sqlalchemy_url)
    worker_broker = CeleryTaskSender(e2e_settings)
    sent: list[str] = []

    def send(name: str, args: list[Any], task_id: str) -> None:
        sent.append(task_id)
        if task_id in lost:  # the other module's rows stay as their tests left them
            worker_broker.send(TaskMessage(name, args, task_id))

    resend = {"factory": factory, "client": redis.Redis.from_url(e2e_settings.redis_url)}
    assert resend_lost(**resend, send=send, grace_seconds=0, recheck_seconds=0.2) >= 3
    assert lost <= set(sent)

    deadline = time.monotonic() + 120
    while True:
        with factory() as session:
            ids = [uuid.UUID(i) for i in lost]
            rows = list(session.scalars(select(Generation).where(Generation.id.in_(ids))))
        if all(r.status in FINAL_STATUSES for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [r.status for r in rows] == ["succeeded"] * 3, [(r.status, r.error) for r in rows]
    with factory() as session:
        counted = session.scalar(
            select(func.sum(RefusalStat.requests)).where(
                RefusalStat.tenant_id == tenant_b.tenant_id, RefusalStat.category == "safety"
            )
        )
    assert counted == 3
    sent.clear()
    resend_lost(**resend, send=send, grace_seconds=0, recheck_seconds=0.2)
    assert lost.isdisjoint(sent)
