"""A submission's key from the process's cache (`api.key_cache`): a key changed in another
process (a revocation, a deactivated tenant, new quotas) takes effect at the next submission,
with nothing written under the old key and no request counted twice. Two apps on one database
and one Redis stand for two API processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.key_cache import KeyCache
from core.settings import Settings
from db.models import Generation
from db.repositories.tenants import LiveKey, update_tenant
from db.session import create_session_factory, session_scope
from tests.api.conftest import TenantKeys, on_fresh_redis, two_api_processes


@pytest.fixture
def cache_settings(api_settings: Settings) -> Settings:
    return on_fresh_redis(api_settings, 5, auth_failures_per_minute=3)


@pytest.fixture
def two_processes(cache_settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    with two_api_processes(cache_settings) as both:
        yield both


def _rows(settings: Settings, tenant_id: uuid.UUID) -> int:
    with create_session_factory(settings.sqlalchemy_url)() as session:
        count = session.scalar(select(func.count()).where(Generation.tenant_id == tenant_id))
        return int(count or 0)


def _submit(client: TestClient, keys: TenantKeys, role: str = "client", **body: object) -> int:
    response = client.post(
        "/v1/generations", json={"prompt": "hi", **body}, headers=keys.headers(role)
    )
    return response.status_code


def _cached(client: TestClient) -> int:
    return len(client.app.state.key_cache)  # type: ignore[attr-defined]


def test_a_key_revoked_in_another_process_is_refused_at_its_next_submission(
    two_processes: tuple[TestClient, TestClient], tenant_a: TenantKeys, cache_settings: Settings
) -> None:
    one, two = two_processes
    assert _submit(one, tenant_a) == 202 and _cached(one) == 1
    listed = two.get("/v1/keys", headers=tenant_a.headers()).json()
    client_key = next(k for k in listed if k["role"] == "client")
    revoked = two.delete(f"/v1/keys/{client_key['id']}", headers=tenant_a.headers())
    assert revoked.status_code == 200, revoked.text
    response = one.post(
        "/v1/generations", json={"prompt": "hi"}, headers=tenant_a.headers("client")
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "unauthenticated"
    chat = one.post(
        "/v1/chat/completions",
        json={"model": cache_settings.model_name, "messages": [{"role": "user", "content": "hi"}]},
        headers=tenant_a.headers("client"),
    )
    assert chat.status_code == 401, chat.text
    assert _rows(cache_settings, tenant_a.tenant_id) == 1  # nothing written under the old key
    assert _submit(one, tenant_a, role="admin") == 202  # the tenant's other key still works


def test_a_deactivated_tenant_writes_nothing_though_the_process_holds_its_keys(
    two_processes: tuple[TestClient, TestClient], tenant_a: TenantKeys, cache_settings: Settings
) -> None:
    one, _ = two_processes
    assert _submit(one, tenant_a) == 202 and _submit(one, tenant_a, role="admin") == 202
    factory = create_session_factory(cache_settings.sqlalchemy_url)
    with session_scope(factory) as session:
        update_tenant(session=session, tenant_id=tenant_a.tenant_id, actor="test", active=False)
    assert _submit(one, tenant_a) == 401 and _submit(one, tenant_a, role="admin") == 401
    assert _rows(cache_settings, tenant_a.tenant_id) == 2
    with session_scope(factory) as session:
        update_tenant(session=session, tenant_id=tenant_a.tenant_id, actor="test", active=True)
    assert _submit(one, tenant_a) == 202


def test_new_quotas_hold_at_the_next_submission_and_its_rate_is_counted_once(
    two_processes: tuple[TestClient, TestClient], tenant_a: TenantKeys, cache_settings: Settings
) -> None:
    one, two = two_processes
    assert _submit(one, tenant_a, max_tokens=64) == 202  # held by `one`, quotas and all
    factory = create_session_factory(cache_settings.sqlalchemy_url)
    with session_scope(factory) as session:
        quotas = {"max_tokens": 32, "requests_per_minute": 3}
        update_tenant(session=session, tenant_id=tenant_a.tenant_id, actor="test", quotas=quotas)
    over = one.post(
        "/v1/generations",
        json={"prompt": "hi", "max_tokens": 64},
        headers=tenant_a.headers("client"),
    )
    assert over.status_code == 422, over.text
    assert over.json()["error"]["field"] == "max_tokens"
    # The first request and the refused one (counted before its key was read again, as it was
    # before the change) leave one place in the window of three: a request whose key was read
    # again is not counted a second time.
    assert _rows(cache_settings, tenant_a.tenant_id) == 1
    statuses = [_submit(client, tenant_a, max_tokens=32) for client in (one, two)]
    assert statuses == [202, 429]


def test_a_blocked_address_gets_429_with_a_key_the_process_holds(
    two_processes: tuple[TestClient, TestClient], tenant_a: TenantKeys
) -> None:
    one, _ = two_processes
    assert _submit(one, tenant_a) == 202
    bad = {"Authorization": "Bearer rcs_000000000000_not-a-real-secret"}
    assert [one.get("/v1/policies", headers=bad).status_code for _ in range(3)] == [401] * 3
    response = one.post(
        "/v1/generations", json={"prompt": "hi"}, headers=tenant_a.headers("client")
    )
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "too_many_failed_authentications"


def _key(n: int) -> LiveKey:
    return LiveKey(uuid.uuid4(), "client", uuid.uuid4(), {"n": n})


def test_an_entry_is_read_again_after_its_refresh_and_the_cache_is_bounded() -> None:
    now = [0.0]
    cache = KeyCache(refresh_seconds=30.0, max_entries=2, clock=lambda: now[0])
    first, second, third = _key(1), _key(2), _key(3)
    cache.put("a", first)
    now[0] = 29.9
    assert cache.get("a") is first
    now[0] = 30.0
    assert cache.get("a") is None and len(cache) == 0  # due to be read (and touched) again
    cache.put("a", first)
    cache.put("b", second)
    cache.put("a", first)  # read again: now the newest
    cache.put("c", third)  # the oldest ("b") leaves
    assert [cache.get(d) for d in "abc"] == [first, None, third]
    cache.drop("a")
    assert cache.get("a") is None and len(cache) == 1
