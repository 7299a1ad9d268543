"""Quotas kept in Redis: one window holds across API processes (two apps here, each with its own
Redis connection, stand for two processes), per tenant and per client address."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from core.settings import Settings
from db.models import Generation
from db.session import create_session_factory
from tests.api.conftest import (
    RecordingSender,
    TenantKeys,
    make_tenant,
    on_fresh_redis,
    two_api_processes,
)


@pytest.fixture
def limited_settings(api_settings: Settings) -> Settings:
    return on_fresh_redis(api_settings, 9, auth_failures_per_minute=5)


@pytest.fixture
def two_processes(limited_settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    with two_api_processes(limited_settings) as both:
        yield both


def _bad_key(i: int) -> dict[str, str]:
    return {"Authorization": f"Bearer rcs_{i:012x}_not-a-real-secret"}


def test_failed_authentications_are_throttled_per_address_across_processes(
    two_processes: tuple[TestClient, TestClient], tenant_a: TenantKeys
) -> None:
    one, two = two_processes
    statuses = [
        (one if i % 2 else two).get("/v1/policies", headers=_bad_key(i)).status_code
        for i in range(5)
    ]
    assert statuses == [401] * 5  # the limit, counted once over both processes
    for client in (one, two):
        blocked = client.get("/v1/policies", headers=_bad_key(99))
        assert blocked.status_code == 429, blocked.text
        assert blocked.json()["error"]["type"] == "too_many_failed_authentications"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        # A blocked address is blocked for every key, so guessing learns nothing.
        assert client.get("/v1/policies", headers=tenant_a.headers()).status_code == 429


def test_another_address_is_not_throttled(
    limited_settings: Settings, two_processes: tuple[TestClient, TestClient], tenant_a: TenantKeys
) -> None:
    one, _ = two_processes
    for i in range(6):
        one.get("/v1/policies", headers=_bad_key(i))
    app = create_app(limited_settings, task_sender=RecordingSender())
    with TestClient(app, client=("203.0.113.7", 5000)) as elsewhere:
        assert elsewhere.get("/v1/policies", headers=tenant_a.headers()).status_code == 200


def test_a_missing_key_is_not_counted_as_a_guess(
    two_processes: tuple[TestClient, TestClient], tenant_a: TenantKeys
) -> None:
    one, _ = two_processes
    for _ in range(10):
        assert one.get("/v1/policies").status_code == 401
    assert one.get("/v1/policies", headers=tenant_a.headers()).status_code == 200


def test_a_tenants_quota_holds_across_processes_and_its_flood_spares_other_tenants(
    limited_settings: Settings,
    two_processes: tuple[TestClient, TestClient],
    platform_key: str,
    tenant_b: TenantKeys,
) -> None:
    one, two = two_processes
    created = one.post(
        "/v1/tenants",
        json={"name": f"flood-{uuid.uuid4().hex[:8]}", "requests_per_minute": 4},
        headers={"Authorization": f"Bearer {platform_key}"},
    )
    assert created.status_code == 201, created.text
    flood = {"Authorization": f"Bearer {created.json()['api_key']}"}
    statuses = [
        (one if i % 2 else two).post("/v1/generations", json={"prompt": "hi"}, headers=flood)
        for i in range(10)
    ]
    assert [s.status_code for s in statuses] == [202] * 4 + [429] * 6
    assert all(1 <= int(s.headers["Retry-After"]) <= 60 for s in statuses[4:])
    with create_session_factory(limited_settings.sqlalchemy_url)() as session:
        rows = session.scalar(  # a refused request left no row
            select(func.count()).where(Generation.tenant_id == created.json()["tenant_id"])
        )
    assert rows == 4
    unknown = one.post("/v1/generations", json={"prompt": "hi", "policy": "nope"}, headers=flood)
    assert unknown.status_code == 429  # over the rate comes first, as before the policy
    calm = make_tenant(limited_settings, f"calm-{uuid.uuid4().hex[:8]}")
    for client in (one, two):
        for keys in (calm, tenant_b):
            answer = client.post("/v1/generations", json={"prompt": "hi"}, headers=keys.headers())
            assert answer.status_code == 202, answer.text


def test_the_checks_hold_when_each_request_runs_on_an_event_loop_of_its_own(
    limited_settings: Settings,
) -> None:
    """A `TestClient` outside `with` serves each request on a new loop, without the lifespan:
    the limiter's Redis connections belong to one loop, so it keeps a client per loop."""
    client = TestClient(create_app(limited_settings, task_sender=RecordingSender()))
    statuses = [client.get("/v1/policies", headers=_bad_key(i)).status_code for i in range(6)]
    assert statuses == [401] * 5 + [429]
