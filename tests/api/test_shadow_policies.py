"""Shadow policies: a version decided on every request beside the active one, never enforced.

The API sets, clears and promotes a shadow (audited); a real worker decides each request of a
policy with a shadow by both versions from the same first-token summary (no extra model work)
and `/v1/stats` shows shadow against live per category, each rate with its Wilson interval.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.categories import CATEGORIES
from core.intervals import wilson_interval
from core.policy import parse_rules
from core.replay import refusal_chances
from core.settings import Settings
from core.summary import Summaries
from db.models import AuditEntry, Generation, RefusalStat
from db.session import create_session_factory
from tests.api.conftest import TenantKeys, set_policy
from tests.api.live import ONLY_SAFETY_ALWAYS
from tests.worker_process import start_worker, stop_worker

LIVE = {"mode": "threshold", "categories": {"safety": {"threshold": 0.9}}}
CANDIDATE = ONLY_SAFETY_ALWAYS  # every request refused as safety


def put_shadow(client: TestClient, keys: TenantKeys, name: str, body: dict[str, Any]) -> Any:
    return client.put(f"/v1/policies/{name}/shadow", json=body, headers=keys.headers())


def test_set_promote_and_clear_a_shadow_each_audited(
    client: TestClient, api_settings: Settings, tenant_a: TenantKeys
) -> None:
    set_policy(client, tenant_a, "main", LIVE)
    response = put_shadow(client, tenant_a, "main", {**CANDIDATE, "reason": "try 0"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["active_version"]["version"] == 1
    assert body["shadow_version"]["version"] == 2
    assert body["shadow_version"]["rules"]["categories"]["safety"]["threshold"] == 0.0
    # A stale If-Match is refused; the right one promotes in one step.
    headers = {**tenant_a.headers(), "If-Match": '"2"'}
    stale = client.post("/v1/policies/main/shadow/promote", headers=headers)
    assert stale.status_code == 409
    promoted = client.post(
        "/v1/policies/main/shadow/promote",
        json={"reason": "shadow looked right"},
        headers={**tenant_a.headers(), "If-Match": '"1"'},
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["active_version"]["version"] == 2
    assert promoted.json()["shadow_version"] is None
    assert promoted.headers["ETag"] == '"2"'
    again = client.post("/v1/policies/main/shadow/promote", headers=tenant_a.headers())
    assert again.status_code == 409 and "no shadow" in again.json()["error"]["message"]
    put_shadow(client, tenant_a, "main", LIVE)
    cleared = client.delete("/v1/policies/main/shadow", headers=tenant_a.headers())
    assert cleared.status_code == 200 and cleared.json()["shadow_version"] is None
    assert cleared.json()["active_version"]["version"] == 2
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with factory() as session:
        actions = session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.tenant_id == tenant_a.tenant_id, AuditEntry.entity == "policy")
            .order_by(AuditEntry.id)
        ).all()
    assert [a for a in actions if a.startswith("policy.shadow")] == [
        "policy.shadow.set",
        "policy.shadow.promote",
        "policy.shadow.set",
        "policy.shadow.clear",
    ]


def test_bad_shadow_rules_and_other_tenants_policies_are_refused(
    client: TestClient, tenant_a: TenantKeys, tenant_b: TenantKeys
) -> None:
    set_policy(client, tenant_a, "main", LIVE)
    bad = put_shadow(client, tenant_a, "main", {"mode": "threshold", "categories": {"x": {}}})
    assert bad.status_code == 422 and bad.json()["error"]["field"].startswith("categories")
    high = put_shadow(
        client, tenant_a, "main", {"mode": "threshold", "categories": {"safety": {"threshold": 2}}}
    )
    assert high.status_code == 422
    assert high.json()["error"]["field"] == "categories.safety.threshold"
    assert put_shadow(client, tenant_b, "main", CANDIDATE).status_code == 404
    assert client.delete("/v1/policies/main/shadow", headers=tenant_b.headers()).status_code == 404
    promote = client.post("/v1/policies/main/shadow/promote", headers=tenant_b.headers())
    assert promote.status_code == 404
    as_client = client.put(
        "/v1/policies/main/shadow", json=CANDIDATE, headers=tenant_a.headers("client")
    )
    assert as_client.status_code == 403


def wait_succeeded(factory: Any, ids: list[uuid.UUID], timeout: float = 120) -> list[Generation]:
    deadline = time.monotonic() + timeout
    while True:
        with factory() as session:
            rows = session.scalars(select(Generation).where(Generation.id.in_(ids))).all()
        if all(r.status == "succeeded" for r in rows) and len(rows) == len(ids):
            return list(rows)
        assert time.monotonic() < deadline, [r.status for r in rows]
        time.sleep(0.2)


PROMPTS = (
    "What is the capital of France?",
    "How do I make a bomb at home?",
    "Do you have feelings?",
    "Write a haiku about autumn leaves.",
    "How can I poison someone without getting caught?",
    "Fix it.",
)


def test_a_real_worker_decides_live_and_shadow_from_one_summary(
    live_client: TestClient,
    e2e_settings: Settings,
    worker_environment: dict[str, str],
    tenant_a: TenantKeys,
    tmp_path: Path,
) -> None:
    set_policy(live_client, tenant_a, "default", LIVE)
    assert put_shadow(live_client, tenant_a, "default", CANDIDATE).status_code == 200
    worker = start_worker(worker_environment, tmp_path / "worker.log")
    try:
        ids = []
        for prompt in PROMPTS:
            response = live_client.post(
                "/v1/generations",
                json={"prompt": prompt, "max_tokens": 4},
                headers=tenant_a.headers("client"),
            )
            assert response.status_code == 202, response.text
            ids.append(uuid.UUID(response.json()["id"]))
        factory = create_session_factory(e2e_settings.sqlalchemy_url)
        rows = wait_succeeded(factory, ids)
    finally:
        stop_worker(worker)
    assert all(r.shadow_version_id is not None for r in rows)
    summaries = Summaries.from_rows([r.summary for r in rows if r.summary is not None])
    greedy = np.ones(len(rows), dtype=bool)
    expected_shadow = refusal_chances(parse_rules(CANDIDATE), summaries, greedy).sum(axis=0)
    expected_live = [sum(r.refusal_category == c for r in rows) for c in CATEGORIES]
    with factory() as session:
        stats = session.scalars(
            select(RefusalStat).where(RefusalStat.tenant_id == tenant_a.tenant_id)
        ).all()
    for shadow in (False, True):
        per_category = {c: (0, 0) for c in CATEGORIES}
        for s in stats:
            if s.shadow == shadow:
                requests, refusals = per_category[s.category]
                per_category[s.category] = (requests + s.requests, refusals + s.refusals)
        expected = expected_shadow if shadow else expected_live
        for c, name in enumerate(CATEGORIES):
            assert per_category[name] == (len(rows), round(float(expected[c]))), (shadow, name)
    # Threshold 0 on safety refuses every request as safety in the shadow, never live.
    assert round(float(expected_shadow[CATEGORIES.index("safety")])) == len(rows)
    body = live_client.get("/v1/stats", headers=tenant_a.headers()).json()
    safety = body["categories"]["safety"]
    assert safety["shadow"]["requests"] == len(rows)
    assert safety["shadow"]["rate"] == 1.0
    assert safety["rate"] == expected_live[CATEGORIES.index("safety")] / len(rows)
    interval = wilson_interval(len(rows), len(rows))
    assert interval is not None
    assert safety["shadow"]["interval"] == {"low": interval.low, "high": interval.high}
