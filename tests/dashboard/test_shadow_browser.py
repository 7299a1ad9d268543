"""The shadow-against-live page in a real headless Chromium against a live uvicorn: signs in,
reads the table, saves docs/screenshots/shadow.png (with RCS_SAVE_SCREENSHOTS=1)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, Settings
from tests.api.conftest import make_tenant
from tests.dashboard.cdp import Browser
from tests.dashboard.test_browser import browser  # noqa: F401 - the same Chromium fixture
from tests.dashboard.test_shadow_page import seed

pytestmark = pytest.mark.integration
SAVE_SCREENSHOTS = os.environ.get("RCS_SAVE_SCREENSHOTS") == "1"


def test_shadow_page_in_a_browser(
    browser: Browser,  # noqa: F811
    live_server: str,
    api_settings: Settings,
    tmp_path: Path,
) -> None:
    keys = make_tenant(api_settings, f"acme-{uuid.uuid4().hex[:6]}")
    seed(api_settings, keys, live=100, shadow=300)
    browser.goto(f"{live_server}/dashboard/login")
    browser.fill("#api_key", keys.admin)
    browser.click("#login-form button")
    browser.goto(f"{live_server}/dashboard/shadow?policy=main&range=1h")
    assert browser.count("#shadow-table tbody tr") == 5
    assert "beyond noise" in browser.eval(
        "document.querySelector('#row-safety .difference').textContent"
    )
    folder = PROJECT_ROOT / "docs" / "screenshots" if SAVE_SCREENSHOTS else tmp_path
    browser.screenshot(folder / "shadow.png")
    assert (folder / "shadow.png").stat().st_size > 10_000
