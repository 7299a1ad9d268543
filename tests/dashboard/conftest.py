"""Dashboard fixtures: the API fixtures on a real PostgreSQL, a signed-in test client, and a live
uvicorn server (a subprocess on a free port) for the browser tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import PROJECT_ROOT, Settings
from tests import servers
from tests.api.conftest import (  # noqa: F401 - fixtures shared with the API tests
    TEST_SECRET,
    RecordingSender,
    api_db_url,
    api_settings,
    platform_key,
)
from tests.dashboard.cdp import Browser
from workers.command_line import api_command

LIVE_BROKER = servers.redis_url(14)
#: The committed screenshots are refreshed with RCS_SAVE_SCREENSHOTS=1; otherwise they go to tmp.
SAVE_SCREENSHOTS = os.environ.get("RCS_SAVE_SCREENSHOTS") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(create_app(api_settings, task_sender=RecordingSender())) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Debian Chromium per test module."""
    if shutil.which("chromium") is None:  # never a silent skip: `make test` installs it
        pytest.fail("Debian chromium is missing: run `make browser`")
    chrome = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chrome
    finally:
        chrome.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots: docs/screenshots/ or a tmp folder."""
    if SAVE_SCREENSHOTS:
        return PROJECT_ROOT / "docs" / "screenshots"
    return tmp_path_factory.mktemp("screenshots")


def sign_in(client: TestClient, key: str) -> None:
    response = client.post("/dashboard/login", data={"api_key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text


def csrf_of(client: TestClient, path: str = "/dashboard/policies") -> str:
    """The CSRF token a signed-in page carries in its forms."""
    html = client.get(path).text
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@pytest.fixture(scope="module")
def live_server(api_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """`uvicorn api.app:create_app --factory` on 127.0.0.1:<free port>; yields its base URL."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("live")
    env = {
        **os.environ,
        "DATABASE_URL": api_db_url,
        "REDIS_URL": LIVE_BROKER,
        "RCS_SECRET_KEY": TEST_SECRET,
        "RCS_ENVIRONMENT": "test",
        "RCS_DATA_DIR": str(data_dir),
    }
    env.pop("BROKER_URL", None)
    log_path = data_dir / "uvicorn.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            api_command("127.0.0.1", port),
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, log_path)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"uvicorn not healthy:\n{log_path.read_text()[-3000:]}")
