"""Generations committed together travel in one broker message (`services/task_batching.py`):
each caller returns once its own row's message is with the broker, a refused send reaches every
caller of that message, the lost-task check sees every row of a batch message, and a worker
decodes, writes and counts each row of one once, however often the message comes."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.tasks_client import CeleryTaskSender
from core.queue import GENERATE_BATCH_TASK, GENERATE_QUEUE, GENERATE_TASK
from core.settings import Settings
from db.models import FINAL_STATUSES, Generation, RefusalStat
from db.session import create_session_factory
from services.task_batching import ROWS_HEADER, CoalescingSender, batch_message
from services.tasks import BrokerUnavailable, TaskMessage
from tests.api.conftest import RecordingSender, TenantKeys, make_tenant
from tests.api.live import IDLE_BROKER, ONLY_SAFETY_ALWAYS, create_policy, submit_queued
from workers.lost_tasks import held_task_ids, resend_lost

pytestmark = pytest.mark.integration


class SlowSender:
    """Takes a while per message, as a broker round trip does, and records each one."""

    def __init__(self, seconds: float, *, refuse: bool = False) -> None:
        self.seconds = seconds
        self.refuse = refuse
        self.sent: list[TaskMessage] = []

    def send(self, message: TaskMessage) -> None:
        time.sleep(self.seconds)
        if self.refuse:
            raise BrokerUnavailable("refused")
        self.sent.append(message)


def _generate(i: int) -> TaskMessage:
    row = str(uuid.UUID(int=i + 1))
    args: list[object] = [row, True] if i % 2 else [row]
    return TaskMessage(GENERATE_TASK, args, row, {"request_id": f"req-{i}"})


def _send_concurrently(sender: CoalescingSender, n: int) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * n
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        try:
            sender.send(_generate(i))
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def test_concurrent_sends_share_messages_and_each_row_goes_once() -> None:
    inner = SlowSender(0.05)
    observed: list[int] = []
    sender = CoalescingSender(inner, max_rows=4, observe=observed.append)
    assert _send_concurrently(sender, 10) == [None] * 10
    rows: list[tuple[str, bool]] = []
    for message in inner.sent:
        if message.name == GENERATE_TASK:
            rows.append((message.args[0], len(message.args) > 1))
        else:
            assert message.name == GENERATE_BATCH_TASK
            batch = [(str(r), bool(s)) for r, s in message.args[0]]
            assert 2 <= len(batch) <= 4
            assert message.headers[ROWS_HEADER].split() == [r for r, _ in batch]
            rows += batch
    expected = [(str(uuid.UUID(int=i + 1)), bool(i % 2)) for i in range(10)]
    assert sorted(rows) == sorted(expected)  # every row once, its stream flag kept
    assert len(inner.sent) < 10  # the ones sent while another was in flight went together
    assert sum(observed) == 10 and len(observed) == len(inner.sent)

    # Alone, a row goes as itself, at once.
    inner.sent.clear()
    sender.send(_generate(20))
    assert [(m.name, m.task_id) for m in inner.sent] == [(GENERATE_TASK, str(uuid.UUID(int=21)))]

    # Other tasks pass straight through.
    sender.send(TaskMessage("rcs.calibrate", ["x"], "x"))
    assert inner.sent[-1].name == "rcs.calibrate"


def test_each_caller_sends_at_most_one_message_and_returns_after_its_own() -> None:
    """Under a steady stream of callers nobody keeps sending for the others."""
    inner = SlowSender(0.05)
    sender = CoalescingSender(inner, max_rows=2)
    returned_after: dict[int, int] = {}

    def one(i: int) -> None:
        sender.send(_generate(i))
        returned_after[i] = len(inner.sent)

    first = threading.Thread(target=one, args=(0,))
    first.start()
    time.sleep(0.01)  # the first caller's message is in flight: the others queue behind it
    others = [threading.Thread(target=one, args=(i,)) for i in range(1, 7)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(timeout=30)
    assert returned_after[0] == 1  # back once its own message went, not after the others'
    assert len(inner.sent) < 7  # those queued behind it went two by two
    assert sorted(returned_after) == list(range(7))


def test_a_refused_batch_reaches_every_caller_and_the_next_one_is_sent() -> None:
    inner = SlowSender(0.05, refuse=True)
    sender = CoalescingSender(inner, max_rows=16)
    outcomes = _send_concurrently(sender, 6)
    assert all(isinstance(o, BrokerUnavailable) for o in outcomes), outcomes
    inner.refuse = False
    sender.send(_generate(7))  # nothing is left stuck "in flight"
    assert [m.task_id for m in inner.sent] == [str(uuid.UUID(int=8))]


def _rows_sent(sent: list[TaskMessage]) -> list[str]:
    rows: list[str] = []
    for message in sent:
        batch = message.args[0] if message.name == GENERATE_BATCH_TASK else [message.args]
        rows += [str(row[0]) for row in batch]
    return rows


def test_callers_on_an_event_loop_share_messages_and_each_hears_of_its_own() -> None:
    """`send_async`: the loop's callers queue while a message is in flight and go together; a
    refused message reaches each of its callers; a caller that leaves does not unsend its row."""
    inner = SlowSender(0.05)
    sender = CoalescingSender(inner, max_rows=4)

    async def main() -> None:
        await asyncio.gather(*(sender.send_async(_generate(i)) for i in range(10)))
        assert sorted(_rows_sent(inner.sent)) == sorted(
            str(uuid.UUID(int=i + 1)) for i in range(10)
        )
        assert len(inner.sent) < 10  # those queued behind a send in flight went together

        inner.refuse = True
        outcomes = await asyncio.gather(
            *(sender.send_async(_generate(i)) for i in range(20, 26)), return_exceptions=True
        )
        assert all(isinstance(o, BrokerUnavailable) for o in outcomes), outcomes
        inner.refuse = False

        inner.sent.clear()
        leaving = asyncio.ensure_future(sender.send_async(_generate(30)))
        await asyncio.sleep(0.01)  # its message is in flight
        leaving.cancel()
        await asyncio.sleep(0.1)
        assert _rows_sent(inner.sent) == [str(uuid.UUID(int=31))]  # sent all the same

    asyncio.run(main())
    asyncio.run(sender.send_async(_generate(40)))  # a new loop gets a queue of its own
    assert _rows_sent(inner.sent)[-1] == str(uuid.UUID(int=41))


def _submit_unsent(settings: Settings, keys: TenantKeys, n: int) -> list[str]:
    """Queued rows whose tasks were never sent (the test sends them)."""
    with TestClient(create_app(settings, task_sender=RecordingSender())) as client:
        return submit_queued(client, keys, n)


def _batch_of(ids: list[str]) -> TaskMessage:
    return batch_message([TaskMessage(GENERATE_TASK, [i], i) for i in ids])


def test_a_carried_row_stays_out_of_the_task_arguments_the_worker_logs(
    idle_broker: Settings, tenant_a: TenantKeys
) -> None:
    recording = RecordingSender()
    with TestClient(create_app(idle_broker, task_sender=recording)) as client:
        body = {"prompt": "my private question", "max_tokens": 4}
        response = client.post("/v1/generations", json=body, headers=tenant_a.headers("client"))
        row_id = response.json()["id"]
        cancel = f"/v1/generations/{row_id}/cancel"  # the test sends its message, no worker
        assert client.post(cancel, headers=tenant_a.headers("client")).status_code == 200
    [(name, args)] = recording.sent
    single = TaskMessage(name, args, str(args[0]))
    sender = CeleryTaskSender(idle_broker)
    sender.send(single)
    sender.send(batch_message([single]))
    queued = redis.Redis.from_url(IDLE_BROKER).lrange(GENERATE_QUEUE, 0, -1)
    reprs = sorted(json.loads(m)["headers"]["argsrepr"] for m in queued)
    assert reprs == [f"['{row_id}', False, {{...}}]", f"[[['{row_id}', False, {{...}}]]]"]


def test_the_lost_task_check_sees_every_row_of_a_batch_message(
    idle_broker: Settings, tenant_a: TenantKeys
) -> None:
    ids = _submit_unsent(idle_broker, tenant_a, 3)
    broker = redis.Redis.from_url(IDLE_BROKER)
    CeleryTaskSender(idle_broker).send(_batch_of(ids))
    assert set(ids) <= held_task_ids(broker)
    sent: list[str] = []
    resend = {
        "factory": create_session_factory(idle_broker.sqlalchemy_url),
        "client": broker,
        "send": lambda name, args, task_id: sent.append(task_id),
        "recheck_seconds": 0.2,
    }
    assert resend_lost(**resend, grace_seconds=0) == 0
    broker.delete(GENERATE_QUEUE)  # lost: each row gets its own task again
    assert resend_lost(**resend, grace_seconds=0) == 3
    assert sorted(sent) == sorted(ids)


def test_rows_run_from_their_message_are_written_once_and_never_over_a_final_row(
    e2e_settings: Settings, running_worker: Path, live_client: TestClient
) -> None:
    """Messages carry each row as written (`core.row_start`): once the worker knows the policy
    it runs them without a claim, and a row that is no longer queued or running (cancelled, or
    finished by an earlier delivery) is decoded but never written or counted again."""
    keys = make_tenant(e2e_settings, f"carried-{uuid.uuid4().hex[:8]}")
    create_policy(live_client, keys, "strict", {**ONLY_SAFETY_ALWAYS, "is_default": True})
    recording = RecordingSender()
    with TestClient(create_app(e2e_settings, task_sender=recording)) as client:
        ids = submit_queued(client, keys, 4)
    messages = [TaskMessage(name, args, str(args[0])) for name, args in recording.sent]
    assert all(len(m.args) == 3 and m.args[2]["row"]["id"] == m.args[0] for m in messages)
    factory = create_session_factory(e2e_settings.sqlalchemy_url)
    with factory.begin() as session:
        cancelled = session.get(Generation, uuid.UUID(ids[3]))
        assert cancelled is not None
        cancelled.status = "cancelled"
    broker = CeleryTaskSender(e2e_settings)

    def logged(written: str, *row_ids: str) -> Callable[[], bool]:
        def check() -> bool:
            log = running_worker.read_text()
            return all(f"generation {i} written={written}" in log for i in row_ids)

        return check

    def until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not done() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done()

    broker.send(messages[0])  # claimed: the worker reads the policy with it
    until(logged("True", ids[0]))
    broker.send(batch_message(messages[1:3]))  # now run straight from the message
    until(logged("True", ids[1], ids[2]))
    broker.send(batch_message(messages))  # again, as after a lost worker: nothing moves
    until(logged("False", *ids))
    with factory() as session:
        rows = {
            str(r.id): r
            for r in session.scalars(
                select(Generation).where(Generation.id.in_([uuid.UUID(i) for i in ids]))
            )
        }
        counted = session.scalar(
            select(func.sum(RefusalStat.requests)).where(
                RefusalStat.tenant_id == keys.tenant_id, RefusalStat.category == "safety"
            )
        )
    assert [rows[i].status for i in ids] == ["succeeded"] * 3 + ["cancelled"]
    assert all(rows[i].refusal_category == "safety" for i in ids[:3]) and counted == 3
    assert all(rows[i].started_at is not None for i in ids[:3])  # written with the result
    log = running_worker.read_text()
    claimed = re.search(f'generation {ids[0]} written=True[^"]*', log)
    carried = re.search(f'generation {ids[1]} written=True[^"]*', log)
    assert claimed is not None and not claimed.group().endswith("not claimed")
    assert carried is not None and carried.group().endswith("not claimed")


def test_a_worker_decodes_each_row_of_a_batch_once_however_often_it_comes(
    e2e_settings: Settings, running_worker: Path, live_client: TestClient
) -> None:
    keys = make_tenant(e2e_settings, f"batch-{uuid.uuid4().hex[:8]}")
    create_policy(live_client, keys, "strict", {**ONLY_SAFETY_ALWAYS, "is_default": True})
    ids = _submit_unsent(e2e_settings, keys, 4)
    factory = create_session_factory(e2e_settings.sqlalchemy_url)
    with factory.begin() as session:  # a row cancelled before its message arrives stays so
        cancelled = session.get(Generation, uuid.UUID(ids[3]))
        assert cancelled is not None
        cancelled.status = "cancelled"
    broker = CeleryTaskSender(e2e_settings)
    message = _batch_of([*ids, str(uuid.uuid4())])  # and an id with no row is skipped
    broker.send(message)
    broker.send(message)  # delivered twice, as after a lost worker

    deadline = time.monotonic() + 120
    while True:
        with factory() as session:
            rows = {
                str(r.id): r
                for r in session.scalars(
                    select(Generation).where(Generation.id.in_([uuid.UUID(i) for i in ids]))
                )
            }
        if all(r.status in FINAL_STATUSES for r in rows.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [rows[i].status for i in ids] == ["succeeded"] * 3 + ["cancelled"]
    assert all(rows[i].refusal_category == "safety" for i in ids[:3])
    held = redis.Redis.from_url(e2e_settings.redis_url)
    while message.task_id in held_task_ids(held) and time.monotonic() < deadline:
        time.sleep(0.2)  # both deliveries acknowledged: the second has run too
    assert message.task_id not in held_task_ids(held)
    with factory() as session:
        counted = session.scalar(
            select(func.sum(RefusalStat.requests)).where(
                RefusalStat.tenant_id == keys.tenant_id, RefusalStat.category == "safety"
            )
        )
    assert counted == 3
