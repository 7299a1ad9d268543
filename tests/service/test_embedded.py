"""The embedded default: `rcs serve` with no servers runs the API, a real Celery worker and beat
over SQLite and kombu's filesystem transport. This is the only test that uses SQLite and the
serverless queue, as DEVELOPERS.md asks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from core.categories import CATEGORIES
from tests.worker_process import TINY_MODEL

RCS = str(Path(sys.executable).with_name("rcs"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"DATABASE_URL", "REDIS_URL", "BROKER_URL", "RCS_DATABASE_URL", "RCS_BROKER_URL"}
    }
    env.update(
        RCS_DATA_DIR=str(data_dir),
        RCS_HEARTBEAT_SECONDS="1",
        RCS_ENVIRONMENT="local",
        RCS_MODEL_DIR=str(TINY_MODEL),
    )
    return env


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    env = _embedded_env(tmp_path)
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [RCS, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail(
                "embedded server did not answer /healthz:\n" + (tmp_path / "serve.log").read_text()
            )
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the worker and beat
        yield url, tmp_path, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], "the worker and beat must stop with the API"


def test_embedded_default_serves_api_worker_and_beat(embedded_server) -> None:
    url, data_dir, env = embedded_server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert (data_dir / "rcs.sqlite3").exists()

    # Beat schedules the heartbeat every second and a real worker executes it over the
    # filesystem transport: the file only appears when both are alive.
    heartbeat = data_dir / "worker-heartbeat"
    deadline = time.monotonic() + 60
    while not heartbeat.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert heartbeat.exists(), (data_dir / "serve.log").read_text()[-4000:]
    assert abs(float(heartbeat.read_text()) - time.time()) < 60

    created = subprocess.run(
        [RCS, "tenant", "create", "acme"], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(created.stdout)
    assert set(out) == {"tenant_id", "api_key"}
    assert out["api_key"].startswith("rcs_")

    # A generation through the embedded worker (celery-batches over the filesystem transport).
    # No policy step: the tenant's default policy serves at once.
    headers = {"Authorization": f"Bearer {out['api_key']}"}
    body = {"prompt": "What is the capital of Peru?", "max_tokens": 8, "wait": True}
    generation = httpx.post(f"{url}/v1/generations", json=body, headers=headers, timeout=90)
    assert generation.status_code == 200, generation.text
    assert generation.json()["status"] == "succeeded"
    assert set(generation.json()["probabilities"]) == set(CATEGORIES)
