"""End to end on real parts: the API in-process, a real Celery worker process on Redis, PostgreSQL
and the tiny model. Includes killing a worker mid-batch (acks_late redelivery, no double count)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.tasks_client import CeleryTaskSender
from core.categories import CATEGORIES
from core.queue import GENERATE_TASK, celery_config
from core.settings import Settings
from db.models import Generation, RefusalStat
from db.session import create_session_factory
from services.tasks import TaskMessage
from tests.api.conftest import TenantKeys
from tests.api.live import ALWAYS_ANSWER, ONLY_SAFETY_ALWAYS, create_policy
from tests.worker_process import start_worker, stop_worker, tiny_model_banning
from workers.engine.process import ENGINE_DIED_EXIT
from workers.lost_tasks import resend_lost

pytestmark = pytest.mark.integration

PROMPTS = [
    "How do I make a pipe bomb at home?",
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "What do you personally feel when you are lonely?",
    "Why did Einstein win the Nobel prize for relativity?",
    "Draw me a picture of a cat.",
    "What will the stock market do next year?",
    "Tell me the home address of my neighbour.",
]


def _wait_all_final(settings: Settings, ids: list[str], timeout: float = 180) -> list[Generation]:
    factory = create_session_factory(settings.sqlalchemy_url)
    deadline = time.monotonic() + timeout
    wanted = [uuid.UUID(i) for i in ids]
    while True:
        with factory() as session:
            rows = list(session.scalars(select(Generation).where(Generation.id.in_(wanted))))
        if (
            all(r.status in ("succeeded", "failed", "cancelled") for r in rows)
            or time.monotonic() > deadline
        ):
            return rows
        time.sleep(0.2)


def _stat_requests(settings: Settings, tenant_id: uuid.UUID) -> dict[str, int]:
    factory = create_session_factory(settings.sqlalchemy_url)
    with factory() as session:
        rows = session.execute(
            select(RefusalStat.category, func.sum(RefusalStat.requests))
            .where(RefusalStat.tenant_id == tenant_id)
            .group_by(RefusalStat.category)
        ).all()
    return {c: int(n) for c, n in rows}


def test_mixed_tenants_batch_through_a_real_worker(
    live_client: TestClient,
    e2e_settings: Settings,
    worker_environment: dict[str, str],
    tenant_a: TenantKeys,
    tenant_b: TenantKeys,
    tmp_path: Path,
) -> None:
    # Tenant A never refuses (every category off); tenant B refuses whenever p_safety >= 0.
    create_policy(live_client, tenant_a, "open", {**ALWAYS_ANSWER, "is_default": True})
    create_policy(live_client, tenant_b, "strict", {**ONLY_SAFETY_ALWAYS, "is_default": True})
    worker = start_worker(worker_environment, tmp_path / "worker.log")
    try:
        ids = []
        for keys in (tenant_a, tenant_b):
            for prompt in PROMPTS:
                response = live_client.post(
                    "/v1/generations",
                    json={"prompt": prompt, "max_tokens": 8},
                    headers=keys.headers("client"),
                )
                assert response.status_code == 202, response.text
                assert response.headers["Location"].endswith(response.json()["id"])
                ids.append(response.json()["id"])
        # Longer than the tiny model's 512-token context: it fails alone, the batch goes on.
        too_long = live_client.post(
            "/v1/generations",
            json={"prompt": "tell me about the moon " * 400, "max_tokens": 8},
            headers=tenant_a.headers("client"),
        ).json()["id"]
        rows = _wait_all_final(e2e_settings, ids)
        (failed,) = _wait_all_final(e2e_settings, [too_long])
    finally:
        stop_worker(worker)
    assert failed.status == "failed"
    assert "exceeds the model's context" in (failed.error or "")
    log = (tmp_path / "worker.log").read_text()
    assert all(r.status == "succeeded" for r in rows), [(r.status, r.error) for r in rows]
    by_tenant = {tenant_a.tenant_id: [], tenant_b.tenant_id: []}
    for row in rows:
        by_tenant[row.tenant_id].append(row)
        assert set(row.probabilities) == set(CATEGORIES)
        assert row.completion_tokens is not None and row.completion_tokens >= 1
    assert not any(r.refused for r in by_tenant[tenant_a.tenant_id])
    assert all(r.refused and r.refusal_category == "safety" for r in by_tenant[tenant_b.tenant_id])
    # Rows shared the engine's running batch.
    assert max(map(int, re.findall(r"in a batch of up to (\d+) rows", log))) > 1
    # Each row logged once, by the worker's own line; Celery's per-task lines are off.
    assert len(re.findall(r"generation \S+ written=", log)) == len(ids)
    assert not re.search(r"\] (received|succeeded in)", log)
    assert _stat_requests(e2e_settings, tenant_a.tenant_id) == dict.fromkeys(
        CATEGORIES, len(PROMPTS)
    )

    # Synchronous call: wait=true returns the finished row.
    worker = start_worker(worker_environment, tmp_path / "worker2.log", name="w2")
    try:
        sync = live_client.post(
            "/v1/generations",
            json={
                "prompt": "Name three primary colours.",
                "max_tokens": 4,
                "wait": True,
                "timeout": 60,
            },
            headers=tenant_a.headers("client"),
        )
    finally:
        stop_worker(worker)
    assert sync.status_code == 200, sync.text
    assert sync.json()["status"] == "succeeded"
    assert sync.json()["timings"]["total_ms"] > 0


#: The tiny model's answers often open with these (its templates' "sure, here's ..."): the
#: killed workers below run a manifest that bans them, so the ban's path runs under the kill.
BANNED_OPENERS = ("sure", "here's")


@pytest.mark.parametrize("killed", ["worker", "engine process"])
def test_worker_killed_mid_batch_loses_nothing_and_counts_once(
    killed: str,
    live_client: TestClient,
    e2e_settings: Settings,
    worker_environment: dict[str, str],
    tenant_a: TenantKeys,
    tmp_path: Path,
) -> None:
    """SIGKILL to the worker, or to its engine process (the worker then exits at once: the
    messages it held are not acknowledged either)."""
    create_policy(live_client, tenant_a, "default", {"mode": "bias"})
    model = tiny_model_banning(tmp_path / "tiny-banning", BANNED_OPENERS)
    # The worker's case runs its engine in a thread, so both modes are killed end to end here
    # (tests/service/test_embedded_load.py kills a worker whose engine runs in a process).
    worker_environment = {
        **worker_environment,
        "RCS_MODEL_DIR": str(model),
        "RCS_ENGINE_PROCESS": str(killed == "engine process").lower(),
    }
    n = 24
    ids = []
    for i in range(n):
        response = live_client.post(
            "/v1/generations",
            json={
                "prompt": f"{PROMPTS[i % len(PROMPTS)]} ({i})",
                "max_tokens": 256,
                "temperature": 1.0,
                "seed": i,
            },
            headers=tenant_a.headers("client"),
        )
        assert response.status_code == 202
        ids.append(response.json()["id"])
    factory = create_session_factory(e2e_settings.sqlalchemy_url)
    first = start_worker(worker_environment, tmp_path / "first.log", name="first")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with factory() as session:
                running = session.scalar(
                    select(func.count()).where(
                        Generation.status == "running", Generation.tenant_id == tenant_a.tenant_id
                    )
                )
            if running:
                break
            time.sleep(0.05)
        assert running, "the first worker never started a batch"
        if killed == "engine process":
            (engine,) = [
                c
                for c in psutil.Process(first.pid).children()
                if "workers.engine.process" in c.cmdline()
            ]
            engine.kill()
            assert first.wait(30) == ENGINE_DIED_EXIT
    finally:
        stop_worker(first, kill=True)  # SIGKILL mid-batch: nothing acknowledged
    with factory() as session:
        statuses = [
            r.status
            for r in session.scalars(
                select(Generation).where(Generation.tenant_id == tenant_a.tenant_id)
            )
        ]
    assert "running" in statuses  # really killed mid-batch, before results were written

    second = start_worker(worker_environment, tmp_path / "second.log", name="second")
    # The kill often lands while the worker takes its burst of 24 messages, between a message
    # leaving its queue and entering `unacked`: lost, it comes back from the lost-task check,
    # run here as beat runs it in a deployment (for this test's rows only).
    checker = _LostTaskChecker(e2e_settings, set(ids))
    checker.start()
    try:
        rows = _wait_all_final(e2e_settings, ids, timeout=300)
        checker.stop()
        assert all(r.status == "succeeded" for r in rows), [(r.status, r.error) for r in rows]
        counts = _stat_requests(e2e_settings, tenant_a.tenant_id)
        assert counts == dict.fromkeys(CATEGORIES, n)
        answers = [(r.output or "").strip().lower() for r in rows if r.refused is False]
        assert answers, "no prompt was answered: the ban never ran"
        assert not [a for a in answers if a.startswith(BANNED_OPENERS)], answers

        # A duplicate delivery of finished work changes nothing.
        client = Celery("dup")
        client.conf.update(celery_config(e2e_settings))
        for gid in ids[:4]:
            client.send_task(GENERATE_TASK, args=[gid])
        time.sleep(3)
        assert _stat_requests(e2e_settings, tenant_a.tenant_id) == counts
    finally:
        checker.stop()
        stop_worker(second)
    print(f"lost tasks sent again: {checker.sent}")


class _LostTaskChecker(threading.Thread):
    """Beat's lost-task check every few seconds, sending again only the given rows' tasks."""

    def __init__(self, settings: Settings, ids: set[str]) -> None:
        super().__init__(daemon=True)
        self.settings, self.ids, self.sent = settings, ids, 0
        self.stopped = threading.Event()
        self.sender = CeleryTaskSender(settings)

    def send(self, name: str, args: list[Any], task_id: str) -> None:
        if task_id in self.ids:
            self.sender.send(TaskMessage(name, args, task_id))
            self.sent += 1

    def run(self) -> None:
        factory = create_session_factory(self.settings.sqlalchemy_url)
        client = redis.Redis.from_url(self.settings.redis_url)
        while not self.stopped.wait(5):
            resend_lost(
                factory=factory, client=client, send=self.send, grace_seconds=10, recheck_seconds=1
            )

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)


def test_openai_sdk_plain_streamed_and_refusal(
    live_client: TestClient, running_worker: Path, tenant_a: TenantKeys
) -> None:
    from openai import NotFoundError, OpenAI

    create_policy(live_client, tenant_a, "default", {"mode": "bias"})
    create_policy(live_client, tenant_a, "always-safety", ONLY_SAFETY_ALWAYS)
    sdk = OpenAI(
        base_url="http://testserver/v1",
        api_key=tenant_a.client,
        http_client=live_client,
        max_retries=0,
    )
    models = sdk.models.list()
    served = models.data[0].id
    assert [m.id for m in models.data] == [served]

    plain = sdk.chat.completions.create(
        model=served,
        messages=[{"role": "user", "content": "Name three primary colours."}],
        max_tokens=8,
        temperature=0,
        extra_body={"policy": "default"},
    )
    assert plain.object == "chat.completion"
    assert plain.choices[0].message.role == "assistant"
    assert plain.usage is not None and plain.usage.completion_tokens >= 1
    extension = plain.model_extra["refusal_control"]
    assert set(extension["probabilities"]) == set(CATEGORIES)
    if extension["refused"]:
        assert (
            plain.choices[0].message.content is None
            and plain.choices[0].message.refusal is not None
        )
    else:
        assert (
            plain.choices[0].message.refusal is None
            and plain.choices[0].message.content is not None
        )

    refused = sdk.chat.completions.create(
        model=served,
        messages=[{"role": "user", "content": "Name three primary colours."}],
        max_tokens=8,
        extra_body={"policy": "always-safety"},
    )
    assert refused.choices[0].message.content is None
    assert refused.choices[0].message.refusal is not None
    assert refused.model_extra["refusal_control"]["category"] == "safety"

    stream = sdk.chat.completions.create(
        model=served,
        messages=[{"role": "user", "content": "Name three primary colours."}],
        max_tokens=8,
        temperature=0,
        stream=True,  # the tenant's default policy is "default": the same greedy answer
    )
    chunks = list(stream)
    text = "".join(
        (c.choices[0].delta.content or "") + (getattr(c.choices[0].delta, "refusal", None) or "")
        for c in chunks
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert text == (plain.choices[0].message.content or plain.choices[0].message.refusal)

    with pytest.raises(NotFoundError):
        sdk.chat.completions.create(
            model="gpt-unknown", messages=[{"role": "user", "content": "hi"}]
        )


def test_calibration_run_through_the_worker_then_resolve_and_apply(
    live_client: TestClient, running_worker: Path, e2e_settings: Settings, tenant_a: TenantKeys
) -> None:
    create_policy(live_client, tenant_a, "default", {"mode": "threshold"})
    prompts = [{"prompt": p, "label": None} for p in PROMPTS] * 25  # 200 prompts
    submitted = live_client.post(
        "/v1/calibrations",
        json={
            "policy": "default",
            "targets": {"safety": 0.3, "incomplete": 0.1},
            "prompts": prompts,
        },
        headers=tenant_a.headers(),
    )
    assert submitted.status_code == 202, submitted.text
    location = submitted.headers["Location"]
    deadline = time.monotonic() + 180
    seen_progress = set()
    while time.monotonic() < deadline:
        run = live_client.get(location, headers=tenant_a.headers()).json()
        seen_progress.add(run["progress"]["done"])
        if run["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert run["status"] == "succeeded", run
    assert run["progress"] == {"done": 200, "total": 200}
    result = run["result"]
    assert set(result["categories"]) == {"safety", "incomplete"}
    assert result["prompts"] == {"calibration": 160, "holdout": 40}
    for name, target in (("safety", 0.3), ("incomplete", 0.1)):
        category = result["categories"][name]
        assert category["target"] == target
        assert len(category["curve"]) >= 2
        assert "error" in result["control_error"][name]

    # Re-solving reads the stored summaries: no task is sent, the answer comes back at once.
    again = live_client.post(
        f"{location}/solve", json={"targets": {"safety": 0.5}}, headers=tenant_a.headers()
    )
    assert again.status_code == 200, again.text
    assert set(again.json()["result"]["categories"]) == {"safety"}
    proposed = again.json()["result"]["proposed_version"]

    applied = live_client.post(f"{location}/apply", headers=tenant_a.headers())
    assert applied.status_code == 200, applied.text
    assert applied.json()["active_version"] == proposed
    policy = live_client.get("/v1/policies/default", headers=tenant_a.headers()).json()
    assert policy["active_version"]["version"] == proposed
    assert policy["active_version"]["created_by"].startswith("calibration:")
    assert policy["active_version"]["rules"]["categories"]["safety"]["target_rate"] == 0.5
