"""/healthz and /readyz: database, broker and a worker, each named when it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import PROJECT_ROOT, Settings
from tests import servers
from tests.api.conftest import TEST_SECRET, RecordingSender
from tests.dashboard.conftest import free_port

pytestmark = pytest.mark.integration
OPS_BROKER = servers.redis_url(13)
CELERY_WORKER = (sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool")
CELERY_WORKER += ("solo", "--without-gossip", "--without-mingle")


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, task_sender=RecordingSender()))


def _settings(tmp_path: Path, database_url: str, broker_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        broker_url=broker_url,
        secret_key=TEST_SECRET,
        environment="test",
        data_dir=tmp_path,
    )


def test_healthz_answers_without_any_dependency(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none", OPS_BROKER)
    assert _client(settings).get("/healthz").json() == {"status": "ok"}


def test_readyz_names_the_database_and_broker_when_they_are_down(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none", "redis://127.0.0.1:1/0"
    )
    started = time.monotonic()
    response = _client(settings).get("/readyz")
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert set(body["failing"]) == {"database", "broker", "workers"}
    assert "OperationalError" in body["checks"]["database"]["detail"]


def test_readyz_without_a_worker_names_only_the_workers(tmp_path: Path, api_db_url: str) -> None:
    redis.Redis.from_url(OPS_BROKER).flushdb()
    response = _client(_settings(tmp_path, api_db_url, OPS_BROKER)).get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["workers"]
    assert body["checks"]["database"] == {"ok": True, "detail": "ok"}
    assert body["checks"]["broker"] == {"ok": True, "detail": "ok"}


def test_readyz_is_ready_with_a_worker_which_serves_its_own_metrics(
    tmp_path: Path, api_db_url: str
) -> None:
    """A real Celery worker (no model needed to answer a ping) on the same broker."""
    redis.Redis.from_url(OPS_BROKER).flushdb()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": api_db_url,
        "REDIS_URL": OPS_BROKER,
        "RCS_SECRET_KEY": TEST_SECRET,
        "RCS_ENVIRONMENT": "test",
        "RCS_DATA_DIR": str(tmp_path),
        "RCS_PRELOAD_MODEL": "false",
        "RCS_WORKER_METRICS_PORT": str(port),
    }
    env.pop("BROKER_URL", None)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*CELERY_WORKER, "-Q", "maintenance", "-n", "ops@%h", "--loglevel", "INFO"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while " ready." not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        response = _client(_settings(tmp_path, api_db_url, OPS_BROKER)).get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["workers"] == {"ok": True, "detail": "1 answered"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "rcs_worker_batch_size_bucket" in metrics
        assert "rcs_worker_first_token_seconds_bucket" in metrics
        # The worker logs JSON lines.
        assert any(line.startswith("{") for line in log_path.read_text().splitlines())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
