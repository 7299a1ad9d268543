"""The embedded default: `rcs serve` with no server URLs runs PostgreSQL and Redis from their
wheels, the API, a real Celery worker and beat, supervised; stops in order and exits 0."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from core.categories import CATEGORIES
from core.settings import SECRET_FILE, UNSAFE_SECRETS
from tests.service.stack import RCS, Stack, stack_dir

PARTS = {"postgres", "redis", "api", "worker", "beat"}


@pytest.fixture
def stack() -> Iterator[Stack]:
    running = Stack(stack_dir() / "data").start()
    try:
        yield running
    finally:
        running.stop()


def test_serve_runs_the_real_parts_supervised_and_stops_in_order(stack: Stack) -> None:
    ready = httpx.get(f"{stack.url}/readyz", timeout=10).json()
    assert {name for name, check in ready["checks"].items() if check["ok"]} >= {
        "database",
        "broker",
        "workers",
    }
    state = stack.state()
    assert set(state.parts) == PARTS
    assert all(part.status == "up" for part in state.parts.values()), state
    assert state.database_url and state.database_url.startswith("postgresql+psycopg://")
    assert state.broker_url and state.broker_url.startswith("redis://127.0.0.1:")

    # The CLI finds the running stack's database; the secret is the data dir's own.
    key = stack.tenant_key("acme")
    secret = (stack.data_dir / SECRET_FILE).read_text().strip()
    assert secret not in UNSAFE_SECRETS and len(secret) >= 32

    headers = {"Authorization": f"Bearer {key}"}
    policy = {"name": "default", "mode": "threshold"}
    created = httpx.post(f"{stack.url}/v1/policies", json=policy, headers=headers)
    assert created.status_code in (201, 409), created.text
    body = {"prompt": "What is the capital of Peru?", "max_tokens": 8, "wait": True}
    generation = httpx.post(f"{stack.url}/v1/generations", json=body, headers=headers, timeout=90)
    assert generation.status_code == 200, generation.text
    assert generation.json()["status"] == "succeeded"
    assert set(generation.json()["probabilities"]) == set(CATEGORIES)

    second = subprocess.run(
        [RCS, "serve", "--port", "1"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and "another rcs process" in second.stderr
    assert stack.state().supervisor_pid == stack.process.pid  # the first one is untouched

    pids = [stack.pid(part) for part in PARTS]
    assert stack.stop() == 0
    _, alive = psutil.wait_procs(
        [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)], 10
    )
    assert alive == []
    assert not (stack.data_dir / "run" / "state.json").exists()


def test_a_dead_part_is_restarted_logged_and_counted(stack: Stack) -> None:
    for part in ("beat", "worker", "redis", "postgres"):
        stack.kill(part)
        stack.wait_restarted(part, restarts=1)
    stack.wait_ready(120)
    metrics = httpx.get(f"{stack.url}/metrics", timeout=10).text
    for part in ("beat", "worker", "redis", "postgres"):
        assert f'rcs_supervised_restarts{{part="{part}"}} 1.0' in metrics
        assert f'rcs_supervised_up{{part="{part}"}} 1.0' in metrics
    assert "worker exited with code -9; restarting" in stack.log(tail=None)


def _serve_once(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = Stack(data_dir).env
    return subprocess.run(
        [RCS, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_an_unusable_data_dir_fails_at_start_with_one_line(fault: str) -> None:
    mount_point = stack_dir()
    options = "size=64k" if fault == "full" else "size=8m"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], check=True)
    try:
        if fault == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        result = _serve_once(mount_point / "data" if fault == "full" else mount_point)
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected = "read-only" if fault == "read-only" else "MB free"
    assert lines[0].startswith("rcs serve: data dir") and expected in lines[0], lines[0]
