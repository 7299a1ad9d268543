"""Fixtures for tests on the live stack: a real Celery worker process on Redis and PostgreSQL
with the tiny model, the API in-process (TestClient) or served by uvicorn (real HTTP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from core.categories import CATEGORIES
from core.settings import Settings
from tests import servers
from tests.api.conftest import TEST_BROKER, TEST_SECRET, TenantKeys, set_policy
from tests.worker_process import flush_broker, start_worker, stop_worker, worker_env

# Threshold 0 on safety and every other category off: every prompt is refused as safety.
ONLY_SAFETY_ALWAYS = {
    "mode": "threshold",
    "categories": {
        c: {"threshold": 0.0} if c == "safety" else {"enabled": False} for c in CATEGORIES
    },
}

# Bias mode, every category off: every prompt is answered.
ALWAYS_ANSWER = {"mode": "bias", "categories": {c: {"bias": "off"} for c in CATEGORIES}}


@pytest.fixture(scope="module")
def e2e_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"broker_url": TEST_BROKER})


@pytest.fixture(scope="module")
def worker_environment(
    e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    flush_broker(TEST_BROKER)
    return worker_env(
        database_url=e2e_settings.sqlalchemy_url,
        broker_url=TEST_BROKER,
        data_dir=tmp_path_factory.mktemp("worker"),
        secret=TEST_SECRET,
        RCS_VISIBILITY_TIMEOUT="4",
    )


@pytest.fixture(scope="module")
def running_worker(
    worker_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One worker for the tests that do not kill theirs; yields its log file."""
    log = tmp_path_factory.mktemp("shared-worker") / "worker.log"
    proc = start_worker(worker_environment, log, name="shared")
    yield log
    stop_worker(proc)


#: A broker no worker consumes: its messages stay where a test puts them.
IDLE_BROKER = servers.redis_url(7)


@pytest.fixture
def idle_broker(e2e_settings: Settings) -> Iterator[Settings]:
    """The live settings with a broker nobody consumes, emptied before and after."""
    client = redis.Redis.from_url(IDLE_BROKER)
    client.flushdb()
    yield e2e_settings.model_copy(update={"broker_url": IDLE_BROKER})
    client.flushdb()


def submit_queued(client: TestClient, keys: TenantKeys, n: int) -> list[str]:
    """`n` queued generations (4 tokens each) as the tenant's client; returns their ids."""
    ids = []
    for i in range(n):
        body = {"prompt": f"What is {i} plus {i}?", "max_tokens": 4}
        response = client.post("/v1/generations", json=body, headers=keys.headers("client"))
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


@pytest.fixture
def live_client(e2e_settings: Settings) -> Iterator[TestClient]:
    # The API's own sender: tasks committed together go in one message.
    with TestClient(create_app(e2e_settings)) as client:
        yield client


def create_policy(client: TestClient, keys: TenantKeys, name: str, body: dict) -> None:
    """A new policy, or new rules for the tenant's `default` (which exists from creation)."""
    set_policy(client, keys, name, body)


@pytest.fixture(scope="module")
def live_server(e2e_settings: Settings) -> Iterator[str]:
    """The API under uvicorn on a free port, for clients that need real HTTP streaming."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(e2e_settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
