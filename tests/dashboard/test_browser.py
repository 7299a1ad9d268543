"""The dashboard in a real headless Chromium (CDP) against a live uvicorn on real PostgreSQL.

Signs in, reads the charts, rolls a policy back, follows a calibration from queued to done and
applies it. Saves one screenshot per view under docs/screenshots/.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
import redis

from core.settings import Settings
from db.models import Policy
from db.repositories import calibrations as runs
from db.session import create_session_factory, session_scope
from tests.api.conftest import make_tenant
from tests.dashboard.cdp import CHROMIUM, Browser
from tests.dashboard.conftest import LIVE_BROKER
from tests.dashboard.seed import (
    STAT_HOURS,
    Seeded,
    finish_calibration_run,
    seed_calibration_run,
    seed_policy_and_stats,
)

pytestmark = pytest.mark.integration
PROMPTS = 30


@pytest.fixture(scope="module")
def seeded(api_settings: Settings) -> tuple[Seeded, str]:
    keys = make_tenant(api_settings, f"acme-{uuid.uuid4().hex[:6]}")
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        return seed_policy_and_stats(session, keys.tenant_id), keys.admin


def _shot(browser: Browser, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    browser.screenshot(path)
    assert path.stat().st_size > 10_000


def test_sign_in_lands_on_the_policies_of_the_keys_tenant(
    browser: Browser, screenshots: Path, live_server: str, seeded: tuple[Seeded, str]
) -> None:
    assert Path(CHROMIUM).exists()
    browser.goto(f"{live_server}/dashboard/policies")
    assert browser.eval("location.pathname") == "/dashboard/login"  # not signed in yet
    _shot(browser, screenshots, "sign-in")
    browser.fill("#api_key", seeded[1])
    browser.click("#login-form button")
    assert browser.eval("location.pathname") == "/dashboard/policies"
    # Every tenant also starts with its `default` policy (v1); the seeded one is at v3.
    versions = browser.eval(
        "[...document.querySelectorAll('#policies .active-version')].map(e => e.textContent.trim())"
    )
    assert sorted(versions) == ["v1", "v3"]
    # The session cookie is HttpOnly: page scripts cannot read it.
    assert "rcs_dashboard" not in browser.eval("document.cookie")


def test_category_chart_has_one_point_per_bucket_with_traffic(
    browser: Browser, screenshots: Path, live_server: str, seeded: tuple[Seeded, str]
) -> None:
    browser.goto(f"{live_server}/dashboard/categories?range=24h&bucket=3600")
    safety = "#cat-safety svg.rate-chart"
    assert browser.eval(f"document.querySelector('{safety}').dataset.points") == str(STAT_HOURS)
    assert browser.count(f"{safety} circle.pt") == STAT_HOURS
    assert browser.count(f"{safety} line.marker") == 3  # v1, v2, v3 activated within 24 h
    assert browser.count("#cat-safety svg.histogram line.threshold") == 1
    assert (
        int(browser.eval("document.querySelector('#cat-safety svg.histogram').dataset.total")) > 0
    )
    _shot(browser, screenshots, "categories")
    browser.goto(f"{live_server}/dashboard/categories?range=24h&bucket=21600")
    assert int(browser.eval(f"document.querySelector('{safety}').dataset.points")) <= 4


def test_rolling_back_shows_the_new_active_version(
    browser: Browser,
    screenshots: Path,
    live_server: str,
    seeded: tuple[Seeded, str],
    api_settings: Settings,
) -> None:
    browser.goto(f"{live_server}/dashboard/policies/main?a=1&b=3")
    assert browser.count("#diff tr.changed") == 2  # safety threshold and target differ
    assert browser.text("#active-version") == "v3"
    _shot(browser, screenshots, "policies")
    browser.click("#rollback-2")
    assert browser.text("#active-version") == "v2"
    assert "Version 2 is now active" in (browser.text("#notice") or "")
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        policy = session.get(Policy, seeded[0].policy_id)
        assert policy is not None and policy.active_version is not None
        assert policy.active_version.version == 2


def _start_calibration(live_server: str, seeded: tuple[Seeded, str], settings: Settings) -> str:
    """Start a run through the API (no worker here: its task waits in the broker); if the
    calibration API is not mounted, create the run through the repository instead."""
    body = {
        "policy": seeded[0].policy_name,
        "targets": {"safety": 0.5, "incomplete": 0.2},
        "target_kind": "labelled",
        "holdout_fraction": 0.0,
        "prompts": [
            {"prompt": f"prompt {i}", "label": ("safety", "incomplete")[i % 2]}
            for i in range(PROMPTS)
        ],
    }
    headers = {"Authorization": f"Bearer {seeded[1]}"}
    response = httpx.post(f"{live_server}/v1/calibrations", json=body, headers=headers, timeout=30)
    if response.status_code in (200, 201, 202):
        return str(response.json()["id"])
    assert response.status_code == 404, response.text
    with session_scope(create_session_factory(settings.sqlalchemy_url)) as session:
        return str(seed_calibration_run(session, seeded[0], total=PROMPTS))


def test_calibration_progress_reaches_done_and_apply_activates_it(
    browser: Browser,
    screenshots: Path,
    live_server: str,
    seeded: tuple[Seeded, str],
    api_settings: Settings,
) -> None:
    redis.Redis.from_url(LIVE_BROKER).flushdb()
    run_id = _start_calibration(live_server, seeded, api_settings)
    factory = create_session_factory(api_settings.sqlalchemy_url)
    browser.goto(f"{live_server}/dashboard/calibrations/{run_id}")
    assert browser.text("#run-status") == "queued"
    assert browser.text("#progress-text") == f"0 / {PROMPTS}"
    # Drive the run as the worker would, and watch the open page follow it.
    with session_scope(factory) as session:
        runs.mark_run_running(session=session, run_id=uuid.UUID(run_id))
        runs.update_progress(session=session, run_id=uuid.UUID(run_id), done=PROMPTS // 2)
    browser.wait_for(
        f"document.querySelector('#progress-text').textContent === '{PROMPTS // 2} / {PROMPTS}'"
    )
    assert browser.text("#run-status") == "running"
    _shot(browser, screenshots, "calibration-progress")
    with session_scope(factory) as session:
        proposed = finish_calibration_run(session, seeded[0], uuid.UUID(run_id))
    browser.wait_for("document.querySelector('#run').dataset.final === 'yes'", timeout=20)
    assert browser.text("#run-status") == "succeeded"
    assert browser.text("#progress-text") == f"{PROMPTS} / {PROMPTS}"
    assert browser.count("svg.curve-chart") == 2
    assert browser.count("svg.curve-chart circle.chosen") == 2
    _shot(browser, screenshots, "calibration")
    browser.click("#apply")
    assert browser.count("#applied") == 1
    assert f"version {proposed}" in (browser.text("#notice") or "")
    browser.goto(f"{live_server}/dashboard/calibrations")
    assert browser.count("#runs tbody tr") >= 1
    _shot(browser, screenshots, "calibrations")


def test_audit_log_filters_by_action(
    browser: Browser, screenshots: Path, live_server: str, seeded: tuple[Seeded, str]
) -> None:
    browser.goto(f"{live_server}/dashboard/audit")
    assert browser.count("#audit tbody tr") >= 5
    _shot(browser, screenshots, "audit")
    browser.goto(f"{live_server}/dashboard/audit?action=policy.activate")
    rows = browser.count("#audit tbody tr")
    assert rows >= 2  # the rollback and the calibration apply
    texts = browser.eval(
        "[...document.querySelectorAll('#audit tbody tr td:nth-child(3)')].map(t => t.textContent.trim())"
    )
    assert set(texts) == {"policy.activate"}


def test_sign_out_ends_the_session(browser: Browser, live_server: str) -> None:
    browser.goto(f"{live_server}/dashboard/policies")
    browser.click("#sign-out")
    assert browser.eval("location.pathname") == "/dashboard/login"
    browser.goto(f"{live_server}/dashboard/policies")
    assert browser.eval("location.pathname") == "/dashboard/login"
