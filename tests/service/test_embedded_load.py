"""The embedded stack under load and faults, started by `rcs serve` exactly as a user starts it.

16 clients for 60 s mix synchronous and asynchronous native generations and OpenAI chat calls
over 8 tenants, one of which floods; the worker is SIGKILLed in the middle. Then Redis and
PostgreSQL are killed under load. The books must balance: no 5xx but 503 with Retry-After while a
server is down, no connection reset, every accepted generation final, and `/v1/stats` equal to
the clients' own counts per tenant and category (nothing lost, nothing counted twice).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.service.load import (
    ClientPlan,
    Outcome,
    database_books,
    drain,
    expected_stats,
    percentile,
    run_clients,
    served_stats,
)
from tests.service.stack import Stack, stack_dir

TENANTS = [f"tenant-{i}" for i in range(8)]
FLOOD, QUIET = TENANTS[0], TENANTS[1]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack(stack_dir() / "data").start()
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    # Only the flooding tenant has the default quota: clients that do not wait for an answer
    # (async) send far more than 600 a minute on a fast machine, whoever they are.
    unlimited = ("--requests-per-minute", "1000000")
    keys = {name: stack.tenant_key(name, *(() if name == FLOOD else unlimited)) for name in TENANTS}
    rules = {"mode": "threshold", "categories": {"safety": {"threshold": 0.5}}}
    for key in keys.values():  # a default policy, whether or not the tenant came with one
        headers = {"Authorization": f"Bearer {key}"}
        response = httpx.put(f"{stack.url}/v1/policies/default", json=rules, headers=headers)
        if response.status_code == 404:
            body = {"name": "default", **rules}
            response = httpx.post(f"{stack.url}/v1/policies", json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
    return keys


def _model(stack: Stack, key: str) -> str:
    models = httpx.get(f"{stack.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    return str(models.json()["data"][0]["id"])


def _books(stack: Stack, keys: dict[str, str]) -> dict[str, dict[str, tuple[int, int]]]:
    since = datetime.now(UTC)
    return {tenant: served_stats(stack.url, key, since) for tenant, key in keys.items()}


def _gained(before: dict, after: dict) -> dict:
    return {
        tenant: {
            c: (n - before[tenant][c][0], r - before[tenant][c][1]) for c, (n, r) in cats.items()
        }
        for tenant, cats in after.items()
    }


def _assert_books_balance(
    stack: Stack,
    keys: dict[str, str],
    outcomes: list[Outcome],
    before: dict,
    since: datetime,
    *,
    clients_saw_everything: bool,
) -> dict:
    """Nothing lost: every generation of the window ends final, those the clients were given
    first. Nothing counted twice: what `/v1/stats` gained per tenant and category is exactly the
    succeeded rows in the database and, without faults, exactly what the clients saw succeed."""
    final = drain(stack.url, keys, outcomes)
    in_database = database_books(stack.state().database_url or "", since)
    gained = _gained(before, _books(stack, keys))
    for tenant in keys:
        empty = dict.fromkeys(gained[tenant], (0, 0))
        assert gained[tenant] == in_database.get(tenant, empty), tenant
        if clients_saw_everything:
            assert gained[tenant] == expected_stats(final, tenant), tenant
    return final


def _summary(outcomes: list[Outcome]) -> dict[str, object]:
    latencies = [o.seconds for o in outcomes if o.status == 200]
    return {
        "requests": len(outcomes),
        "statuses": dict(Counter(str(o.status) for o in outcomes)),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
    }


def test_sixteen_clients_for_a_minute_with_a_flood_and_a_killed_worker(stack, keys) -> None:
    before, since = _books(stack, keys), datetime.now(UTC)
    model = _model(stack, keys[QUIET])
    alone = run_clients(stack.url, [ClientPlan(QUIET, keys[QUIET], 1)], seconds=10, model=model)

    plans = [ClientPlan(FLOOD, keys[FLOOD], 100 + i) for i in range(6)]
    plans.append(ClientPlan(QUIET, keys[QUIET], 200))
    plans += [ClientPlan(TENANTS[2 + i % 6], keys[TENANTS[2 + i % 6]], 300 + i) for i in range(9)]
    assert len(plans) == 16
    killer = threading.Timer(25, lambda: stack.kill("worker"))
    killer.start()
    outcomes = run_clients(stack.url, plans, seconds=60, model=model)
    killer.join()

    final = _assert_books_balance(
        stack, keys, alone + outcomes, before, since, clients_saw_everything=True
    )
    statuses = Counter(o.status for o in outcomes)
    assert not [o for o in outcomes if o.status is None], "connection errors"
    assert not [o for o in outcomes if o.status and o.status >= 500], statuses
    assert set(statuses) <= {200, 202, 429}, statuses  # 429 only for the flooding tenant
    assert not [o for o in outcomes if o.status == 429 and o.tenant != FLOOD]
    quiet = [o for o in outcomes if o.tenant == QUIET]
    assert all(o.status in (200, 202) for o in alone + quiet)
    assert stack.state().parts["worker"].restarts == 1
    assert "requeued" in stack.log(tail=None)  # the killed worker held unacknowledged messages
    figures = {
        "all": _summary(outcomes),
        "quiet_alone": _summary([o for o in alone if o.kind != "async"]),
        "quiet_during_flood": _summary([o for o in quiet if o.kind != "async"]),
        "generations_final": Counter(r["status"] for r in final.values()),
        "lost_tasks_sent_again": stack.log(tail=None).count("sent again the lost task"),
    }
    print("\nload figures:", json.dumps(figures, default=str))


def test_redis_and_postgres_killed_under_load(stack, keys) -> None:
    before, since = _books(stack, keys), datetime.now(UTC)
    model = _model(stack, keys[QUIET])
    plans = [ClientPlan(TENANTS[2 + i % 6], keys[TENANTS[2 + i % 6]], 500 + i) for i in range(8)]

    def faults() -> None:
        time.sleep(6)
        stack.kill("redis")
        time.sleep(12)
        stack.kill("postgres")

    injector = threading.Thread(target=faults)
    injector.start()
    outcomes = run_clients(stack.url, plans, seconds=35, model=model)
    injector.join()
    stack.wait_ready(120)

    assert not [o for o in outcomes if o.status is None], "connection errors"
    unavailable = [o for o in outcomes if o.status == 503]
    assert all(o.retry_after for o in unavailable)
    assert not [o for o in outcomes if o.status and o.status >= 500 and o.status != 503]
    assert {o.status for o in outcomes} <= {200, 202, 503}
    assert stack.state().parts["redis"].restarts == 1
    assert stack.state().parts["postgres"].restarts == 1
    # Work queued before and during the faults resumes: every accepted generation ends.
    # A 503 can come after the row was written (the broker took the task, then the database
    # went away before the answer): that work still finishes and counts once, in the database.
    final = _assert_books_balance(
        stack, keys, outcomes, before, since, clients_saw_everything=False
    )
    print(
        "\nfault figures:",
        json.dumps(
            {**_summary(outcomes), "final": Counter(r["status"] for r in final.values())},
            default=str,
        ),
    )
