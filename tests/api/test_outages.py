"""While a server is down the API answers 503 with Retry-After (never 500), leaves nothing
waiting for a task that was never queued, and `/readyz` names the supervised part that is down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis.exceptions
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.tasks_client import NOT_QUEUED, CeleryTaskSender
from core.settings import Settings
from db.models import Generation
from db.session import create_session_factory
from embedded.state import DOWN, UP, PartState, RunState
from tests.api.conftest import TenantKeys

pytestmark = pytest.mark.integration
CLOSED = "127.0.0.1:1"


def _settings(api_settings: Settings, **changes: object) -> Settings:
    return api_settings.model_copy(update=changes)


def test_broker_down_gives_503_and_a_final_row(
    api_settings: Settings, tenant_a: TenantKeys
) -> None:
    settings = _settings(api_settings, broker_url=f"redis://{CLOSED}/0")
    with TestClient(create_app(settings, task_sender=CeleryTaskSender(settings))) as client:
        policy = {"name": "default", "mode": "threshold"}
        client.post("/v1/policies", json=policy, headers=tenant_a.headers())
        body = {"prompt": "What is the capital of Peru?", "max_tokens": 4}
        response = client.post("/v1/generations", json=body, headers=tenant_a.headers())
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["error"]["type"] == "unavailable"
    # The row was written before the broker refused it: it is final, not waiting for ever.
    with create_session_factory(settings.sqlalchemy_url)() as session:
        rows = session.scalars(select(Generation).where(Generation.tenant_id == tenant_a.tenant_id))
        assert [(r.status, r.error) for r in rows] == [("failed", NOT_QUEUED)]


def test_database_down_gives_503_with_retry_after(api_settings: Settings) -> None:
    settings = _settings(api_settings, database_url=f"postgresql+psycopg://nobody@{CLOSED}/none")
    headers = {"Authorization": "Bearer rcs_0123456789ab_any-secret"}
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/policies", headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"]["message"].startswith("the database is unavailable")


def test_readyz_names_a_supervised_part_that_is_down(
    api_settings: Settings, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.json"
    parts = {
        "postgres": PartState(1, UP),
        "redis": PartState(2, UP),
        "beat": PartState(None, DOWN, 1, -9),
    }
    RunState(supervisor_pid=os.getpid(), parts=parts).write(state_file)
    settings = _settings(api_settings, supervisor_state=state_file)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        metrics = client.get("/metrics").text
    assert response.status_code == 503
    assert "beat" in response.json()["failing"]
    assert "postgres" not in response.json()["failing"]
    assert 'rcs_supervised_up{part="beat"} 0.0' in metrics
    assert 'rcs_supervised_restarts{part="beat"} 1.0' in metrics


@pytest.mark.parametrize(
    "error", [redis.exceptions.TimeoutError("slow"), redis.exceptions.ConnectionError("gone")]
)
def test_redis_unavailable_mid_request_gives_503_with_retry_after(
    api_settings: Settings, error: Exception
) -> None:
    """A stream or notification read that Redis does not answer is an outage the client can
    wait out (it was a 500 when a blocking read outlived redis-py's default socket timeout)."""
    app = create_app(api_settings)

    def read_events() -> None:
        raise error

    app.add_api_route("/test-redis-read", read_events)
    with TestClient(app) as client:
        response = client.get("/test-redis-read")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"]["type"] == "unavailable"
