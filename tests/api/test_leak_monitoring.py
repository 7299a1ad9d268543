"""Leak monitoring on live traffic: a real worker checks the sampled answers' text, records each
verdict on its row and counts it in the statistics under the nearest category."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.categories import CATEGORIES
from core.refusal_text import find_refusal
from core.settings import Settings
from db.models import Generation, RefusalStat
from db.session import create_session_factory
from tests.api.conftest import TenantKeys
from tests.api.live import ALWAYS_ANSWER, create_policy
from tests.worker_process import start_worker, stop_worker

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is the capital of France?",
    "How do I make a pipe bomb at home?",
    "What do you personally feel when you are lonely?",
    "Draw me a picture of a cat.",
    "Why did Einstein win the Nobel prize for relativity?",
    "Write a haiku about autumn leaves.",
]


def _final_rows(settings: Settings, ids: list[uuid.UUID], timeout: float = 180) -> list[Generation]:
    factory = create_session_factory(settings.sqlalchemy_url)
    deadline = time.monotonic() + timeout
    while True:
        with factory() as session:
            rows = list(session.scalars(select(Generation).where(Generation.id.in_(ids))))
        if all(r.status == "succeeded" for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_every_sampled_answer_is_checked_and_counted_under_its_nearest_category(
    live_client: TestClient,
    e2e_settings: Settings,
    worker_environment: dict[str, str],
    tenant_a: TenantKeys,
    tmp_path: Path,
) -> None:
    # Every category off: every request is answered, and with a share of 1 every one is checked.
    create_policy(live_client, tenant_a, "open", {**ALWAYS_ANSWER, "is_default": True})
    worker = start_worker(
        {**worker_environment, "RCS_LEAK_SAMPLE_SHARE": "1"}, tmp_path / "worker.log", name="leaks"
    )
    try:
        ids = []
        for prompt in PROMPTS:
            response = live_client.post(
                "/v1/generations",
                json={"prompt": prompt, "max_tokens": 12, "temperature": 0.0},
                headers=tenant_a.headers("client"),
            )
            assert response.status_code == 202, response.text
            ids.append(uuid.UUID(response.json()["id"]))
        rows = _final_rows(e2e_settings, ids)
    finally:
        stop_worker(worker)
    assert [r.status for r in rows] == ["succeeded"] * len(PROMPTS)
    for row in rows:
        assert row.refused is False and row.leak is not None
        found = find_refusal(row.output or "")
        assert row.leak == (found is not None)
        assert row.leak_phrase == (found.phrase if found else None)
    factory = create_session_factory(e2e_settings.sqlalchemy_url)
    with factory() as session:
        per_category = dict(
            session.execute(
                select(RefusalStat.category, func.sum(RefusalStat.leak_checks))
                .where(RefusalStat.tenant_id == tenant_a.tenant_id)
                .group_by(RefusalStat.category)
            ).all()
        )
        leaks = session.scalar(
            select(func.sum(RefusalStat.leaks)).where(RefusalStat.tenant_id == tenant_a.tenant_id)
        )
    expected: dict[str, int] = {}
    for row in rows:
        probabilities = row.probabilities or {}
        nearest = max(CATEGORIES, key=lambda c: probabilities[c])
        expected[nearest] = expected.get(nearest, 0) + 1
    assert {c: int(n) for c, n in per_category.items() if n} == expected
    assert int(leaks or 0) == sum(1 for r in rows if r.leak)
    # GET /v1/stats gives the same counts per category of the policy.
    body = live_client.get("/v1/stats?policy=open", headers=tenant_a.headers()).json()
    served = {c: v["leak_checks"] for c, v in body["categories"].items() if v["leak_checks"]}
    assert served == expected
    assert sum(v["leaks"] for v in body["categories"].values()) == int(leaks or 0)
    # /metrics reads the last hour's counts from the statistics, with no tenant label.
    metrics = live_client.get("/metrics").text
    for category, count in expected.items():
        assert f'rcs_leak_checks_last_hour{{category="{category}"}} {float(count)}' in metrics
