"""API fixtures: a migrated PostgreSQL database per module, the real app in-process, real keys.

The API commits for real (a worker process must see its rows), so these tests use their own
database per module instead of the rolled-back `db_session`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from core.policy import DEFAULT_POLICY_NAME
from core.settings import Settings
from db.migrate import upgrade
from db.repositories.tenants import create_api_key, create_platform_admin_key, create_tenant
from db.session import create_session_factory, session_scope
from services.tasks import TaskMessage
from tests import servers
from tests.conftest import temporary_pg_database

TEST_SECRET = "test-secret-0123456789abcdef"
TEST_BROKER = servers.redis_url(15)


@dataclass(frozen=True)
class TenantKeys:
    tenant_id: uuid.UUID
    admin: str
    client: str

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


class RecordingSender:
    """A task sender for API-only tests: records what the API would have sent after commit."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send(self, message: TaskMessage) -> None:
        self.sent.append((message.name, message.args))


@pytest.fixture(scope="module")
def api_db_url(pg_admin_url: str) -> Iterator[str]:
    with temporary_pg_database(pg_admin_url, label="api") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def api_settings(api_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=api_db_url,
        broker_url=TEST_BROKER,
        secret_key=TEST_SECRET,
        environment="test",
        data_dir=tmp_path_factory.mktemp("data"),
        model_dir=None,
        # The isolation tests make many failed authentications on purpose; the throttle has
        # its own test (test_auth_throttle.py).
        auth_failures_per_minute=1_000_000,
    )


def make_tenant(settings: Settings, name: str) -> TenantKeys:
    factory = create_session_factory(settings.sqlalchemy_url)
    with session_scope(factory) as session:
        tenant, admin = create_tenant(session=session, name=name, secret=TEST_SECRET)
        _, client = create_api_key(
            session=session, secret=TEST_SECRET, tenant_id=tenant.id, role="client", name="client"
        )
        return TenantKeys(tenant.id, admin, client)


@pytest.fixture(scope="module")
def platform_key(api_settings: Settings) -> str:
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with session_scope(factory) as session:
        _, plaintext = create_platform_admin_key(session=session, secret=TEST_SECRET, name="ops")
        return plaintext


def set_policy(
    client: TestClient, keys: TenantKeys, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Create a policy, or give the tenant's `default` (which exists from creation) these rules
    as a new version."""
    if name == DEFAULT_POLICY_NAME:
        response = client.put(f"/v1/policies/{name}", json=body, headers=keys.headers())
        assert response.status_code == 200, response.text
    else:
        payload = {"name": name, **body}
        response = client.post("/v1/policies", json=payload, headers=keys.headers())
        assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def client(api_settings: Settings, sender: RecordingSender) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, task_sender=sender)) as test_client:
        yield test_client


@pytest.fixture
def tenant_a(api_settings: Settings) -> TenantKeys:
    return make_tenant(api_settings, f"a-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def tenant_b(api_settings: Settings) -> TenantKeys:
    return make_tenant(api_settings, f"b-{uuid.uuid4().hex[:8]}")


def on_fresh_redis(settings: Settings, redis_db: int, **update: Any) -> Settings:
    """`settings` with an emptied Redis database of their own (`update` for anything else)."""
    url = servers.redis_url(redis_db)
    redis.Redis.from_url(url).flushdb()
    return settings.model_copy(update={"broker_url": url, **update})


@contextmanager
def two_api_processes(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps on one database and one Redis, each with its own connections and memory: two
    API processes."""
    first = create_app(settings, task_sender=RecordingSender())
    second = create_app(settings, task_sender=RecordingSender())
    with TestClient(first) as one, TestClient(second) as two:
        yield one, two
