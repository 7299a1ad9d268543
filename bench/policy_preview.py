"""What-if replay benchmark: `POST /v1/policies/{name}/preview` over 100,000 stored requests.

    .venv/bin/python -m bench.policy_preview [--requests 100000] [--repeats 7]

A temporary migrated PostgreSQL database (the suite's server: embedded unless
`RCS_TEST_PG_ADMIN_URL` is set) gets `--requests` succeeded generations of one policy in one
hour, each with a first-token summary shaped like a refusal-token model's (a third sampled at
T = 0.7) and the decision its threshold rules served, plus a fifth as many rows of another
tenant in the same hour (which the replay must skip). The endpoint is called through the real
app in this process (`TestClient`: routing, auth, validation, JSON), with a threshold candidate
and a bias candidate. The baseline, in the same process, is the obvious way to do the same
replay: load the window's ORM rows and build `Summaries.from_rows` from their JSON summaries.
Figures are wall-clock times (median and best of `--repeats`) and the baseline / endpoint ratio.
Saves bench/results/policy-preview.json. Never a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from api.app import create_app
from bench.saving import save_results
from core.categories import CATEGORIES
from core.policy import PolicyRules, parse_rules
from core.replay import draw_decisions, one_hot, refusal_chances
from core.settings import Settings
from core.summary import N_CATEGORIES, Summaries
from db.migrate import upgrade
from db.models import Generation
from db.repositories.policies import create_policy
from db.repositories.tenants import create_tenant
from db.repositories.traffic import window_traffic
from db.session import create_session_factory, session_scope
from services.policy_preview import MAX_PREVIEW_REQUESTS, preview_policy
from tests import servers
from tests.conftest import temporary_pg_database

SECRET = "bench-secret-0123456789abcdef"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SERVED = parse_rules({"mode": "threshold", "categories": {"safety": {"threshold": 0.5}}})
CANDIDATES = {
    "threshold": {
        "mode": "threshold",
        "categories": {"safety": {"threshold": 0.3}, "incomplete": {"threshold": 0.8}},
    },
    "bias": {"mode": "bias", "categories": {"safety": {"bias": 1.5}}},
}
COLUMNS = (
    "id",
    "tenant_id",
    "policy_version_id",
    "model",
    "messages",
    "params",
    "status",
    "refused",
    "refusal_category",
    "probabilities",
    "summary",
    "created_at",
)


def model_like(rng: np.random.Generator, n: int) -> tuple[Summaries, np.ndarray]:
    """Summaries whose own category stands out for 40% of prompts; a third sampled at T = 0.7."""
    s = rng.normal(-4.0, 2.0, (n, N_CATEGORIES))
    own = rng.integers(0, N_CATEGORIES, n)
    refusing = rng.random(n) < 0.4
    s[refusing, own[refusing]] += rng.normal(6.0, 3.0, int(refusing.sum()))
    m = rng.normal(1.0, 1.0, n)
    greedy = rng.random(n) >= 1 / 3
    temperature = np.where(greedy, 1.0, 0.7)
    return Summaries(s, m, m + 0.5, m / temperature + 0.5, temperature), greedy


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def seed(url: str, tenant_id: uuid.UUID, version_id: uuid.UUID, n: int, seed: int) -> None:
    """n succeeded rows, one per 36 ms of the hour from T0, written with COPY."""
    rng = np.random.default_rng(seed)
    summaries, greedy = model_like(rng, n)
    served = draw_decisions(refusal_chances(SERVED, summaries, greedy), rng)
    rows = summaries.to_rows()
    step = timedelta(hours=1) / n
    with psycopg.connect(_libpq(url)) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY generations ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for i in range(n):
                category = CATEGORIES[served[i]] if served[i] >= 0 else None
                copy.write_row(
                    (
                        uuid.uuid4(),
                        tenant_id,
                        version_id,
                        "tiny",
                        '"hello"',
                        json.dumps({"temperature": 0.0 if greedy[i] else 0.7}),
                        "succeeded",
                        category is not None,
                        category,
                        "{}",
                        json.dumps(rows[i]),
                        T0 + i * step,
                    )
                )
        conn.execute("ANALYZE generations")


def tenant_with_policy(url: str, name: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A tenant, its admin key, and a policy `main` with `SERVED` active."""
    factory = create_session_factory(url)
    with session_scope(factory) as session:
        tenant, key = create_tenant(session=session, name=name, secret=SECRET)
        policy = create_policy(
            session=session, tenant_id=tenant.id, name="main", rules=SERVED, actor="bench"
        )
        assert policy.active_version_id is not None
        return tenant.id, policy.active_version_id, key


def baseline(url: str, tenant_id: uuid.UUID, rules: PolicyRules) -> np.ndarray:
    """The obvious replay: ORM rows of the window, summaries parsed from their JSON."""
    factory = create_session_factory(url)
    with factory() as session:
        found = session.execute(
            select(Generation.summary, Generation.params, Generation.refusal_category).where(
                Generation.tenant_id == tenant_id,
                Generation.created_at >= T0,
                Generation.created_at < T0 + timedelta(hours=1),
                Generation.status == "succeeded",
            )
        ).all()
    summaries = Summaries.from_rows([r.summary for r in found])
    greedy = np.array([float(r.params.get("temperature", 0.0)) == 0.0 for r in found])
    served = np.array([CATEGORIES.index(r[2]) if r[2] else -1 for r in found])
    chances = refusal_chances(rules, summaries, greedy)
    counts: np.ndarray = np.stack([chances.sum(axis=0), one_hot(served).sum(axis=0)])
    return counts


def breakdown(url: str, tenant_id: uuid.UUID, rules: PolicyRules, repeats: int) -> dict[str, Any]:
    """Where the endpoint's time goes: the window's read alone, then the whole service call."""
    factory = create_session_factory(url)
    end = T0 + timedelta(hours=1)
    with factory() as session:
        version_ids = [v for v in session.scalars(select(Generation.policy_version_id).distinct())]

        def read() -> Any:
            return window_traffic(
                session=session,
                tenant_id=tenant_id,
                policy_version_ids=version_ids,
                start=T0,
                end=end,
                limit=MAX_PREVIEW_REQUESTS,
            )

        def service() -> Any:
            return preview_policy(
                session=session,
                tenant_id=tenant_id,
                policy_name="main",
                rules=rules,
                start=T0,
                end=end,
            )

        return {
            "read_window": figures(timed(read, repeats)[0]),
            "service_call": figures(timed(service, repeats)[0]),
        }


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    fn()  # warm: connections, plans, caches
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def figures(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "best_s": min(times), "worst_s": max(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    load = os.getloadavg()
    with temporary_pg_database(servers.pg_admin_url(), label="preview") as url:
        upgrade(url)
        tenant_id, version_id, key = tenant_with_policy(url, "bench")
        other_id, other_version, _ = tenant_with_policy(url, "neighbour")
        t = time.perf_counter()
        seed(url, tenant_id, version_id, args.requests, seed=1)
        seed(url, other_id, other_version, args.requests // 5, seed=2)
        seeding_s = time.perf_counter() - t
        settings = Settings(
            database_url=url,
            secret_key=SECRET,
            environment="test",
            broker_url=servers.redis_url(12),
        )
        results: dict[str, Any] = {}
        with TestClient(create_app(settings)) as client:
            for name, rules in CANDIDATES.items():
                body = {
                    "rules": rules,
                    "start": T0.isoformat(),
                    "end": (T0 + timedelta(hours=1)).isoformat(),
                }

                def call(body: dict[str, Any] = body) -> dict[str, Any]:
                    response = client.post(
                        "/v1/policies/main/preview",
                        json=body,
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    assert response.status_code == 200, response.text
                    answer: dict[str, Any] = response.json()
                    return answer

                endpoint_times, answer = timed(call, args.repeats)
                assert answer["requests"] == args.requests, answer["requests"]
                parsed = parse_rules(rules)
                base_times, counts = timed(
                    lambda p=parsed: baseline(url, tenant_id, p), args.repeats
                )
                got = [answer["categories"][c]["candidate"]["refusals"] for c in CATEGORIES]
                np.testing.assert_allclose(got, counts[0], rtol=1e-9)  # the same replay
                results[name] = {
                    "endpoint": figures(endpoint_times),
                    "baseline_orm_json": figures(base_times),
                    "baseline_over_endpoint": statistics.median(base_times)
                    / statistics.median(endpoint_times),
                    **breakdown(url, tenant_id, parsed, args.repeats),
                    "safety_candidate_rate": answer["categories"]["safety"]["candidate"]["rate"],
                    "safety_served_rate": answer["categories"]["safety"]["served"]["rate"],
                }
    report = {
        "requests": args.requests,
        "other_tenant_requests": args.requests // 5,
        "repeats": args.repeats,
        "seeding_s": seeding_s,
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "candidates": results,
    }
    print(f"{args.requests} stored requests (+{args.requests // 5} of another tenant)")
    print(
        "candidate   endpoint median (best)   of which: read  service"
        "   ORM+JSON baseline   baseline/endpoint"
    )
    for name, r in results.items():
        e, b = r["endpoint"], r["baseline_orm_json"]
        read, service = r["read_window"]["median_s"], r["service_call"]["median_s"]
        print(
            f"{name:10s}  {e['median_s'] * 1000:8.0f} ms ({e['best_s'] * 1000:5.0f} ms)"
            f"   {read * 1000:10.0f} ms {service * 1000:5.0f} ms"
            f"   {b['median_s'] * 1000:12.0f} ms   {r['baseline_over_endpoint']:14.1f}x"
        )
    print(f"load average before {load}, after {report['load_average_after']}")
    save_results("policy-preview.json", report)


if __name__ == "__main__":
    main()
