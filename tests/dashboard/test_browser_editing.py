"""The dashboard's edits in a real headless Chromium (CDP) against a live uvicorn on PostgreSQL.

Moves a threshold in the policy editor and watches the what-if preview follow (checked against
`POST /v1/policies/{name}/preview` with the same rules), sees a validation message appear next
to a field, saves a new version; creates and revokes a key; uploads a calibration JSONL and
watches the run; browses generations and opens a leak. Saves a screenshot of each view under
docs/screenshots/ with RCS_SAVE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import select

from core.categories import CATEGORIES
from core.settings import Settings
from db.models import Policy, Tenant
from db.repositories import calibrations as runs
from db.repositories.policies import get_policy_by_name
from db.session import create_session_factory, session_scope
from tests.api.conftest import make_tenant
from tests.dashboard.cdp import Browser
from tests.dashboard.conftest import LIVE_BROKER
from tests.dashboard.seed import seed_generations, seed_policy_and_stats, seed_shadow_traffic

pytestmark = pytest.mark.integration
TRAFFIC = 400
PROMPTS = 24


@pytest.fixture(scope="module")
def admin_key(api_settings: Settings) -> str:
    """A tenant with the seeded `main` policy (v3 active, 24 h of statistics) and TRAFFIC
    generations of it in the last hour, every answer checked for a leak."""
    keys = make_tenant(api_settings, f"acme-{uuid.uuid4().hex[:6]}")
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        seed_policy_and_stats(session, keys.tenant_id)
        policy = get_policy_by_name(session=session, tenant_id=keys.tenant_id, name="main")
        seed_generations(session, policy, n=TRAFFIC, seed=11)
    return keys.admin


def _shot(browser: Browser, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    browser.screenshot(path)
    assert path.stat().st_size > 10_000


def _set(browser: Browser, selector: str, value: str, event: str = "input") -> None:
    """Set a field as a person would (the value, then the event the page listens to)."""
    browser.fill(selector, value)
    browser.eval(
        f"document.querySelector({json.dumps(selector)})"
        f".dispatchEvent(new Event({json.dumps(event)}, {{bubbles: true}}))"
    )


def _updates(browser: Browser) -> int:
    return int(browser.eval("Number(document.querySelector('#preview').dataset.updates || 0)"))


def _wait_preview(browser: Browser, after: int, state: str = "ready") -> None:
    browser.wait_for(
        f"Number(document.querySelector('#preview').dataset.updates || 0) > {after} && "
        f"document.querySelector('#preview').dataset.state === '{state}'",
        timeout=20,
    )


def _candidate(browser: Browser, category: str) -> float:
    return float(browser.eval(f"document.querySelector('#preview-{category}').dataset.candidate"))


def test_moving_a_threshold_updates_the_preview_and_saving_makes_a_version(
    browser: Browser,
    screenshots: Path,
    live_server: str,
    admin_key: str,
) -> None:
    browser.goto(f"{live_server}/dashboard/login")
    browser.fill("#api_key", admin_key)
    browser.click("#login-form button")
    browser.goto(f"{live_server}/dashboard/policies/main/edit")
    _wait_preview(browser, 0)
    assert int(browser.eval("document.querySelector('#preview').dataset.requests")) == TRAFFIC
    before = _candidate(browser, "safety")
    seen = _updates(browser)
    slider = "#rule-safety input.slider[data-mirror='categories.safety.threshold']"
    _set(browser, slider, "0.05")
    assert (
        browser.eval("document.querySelector('[name=\"categories.safety.threshold\"]').value")
        == "0.05"
    )
    _wait_preview(browser, seen)
    after = _candidate(browser, "safety")
    assert after > before
    # The page shows what the API's own preview computes for the same rules and window.
    start = browser.eval("document.querySelector('#preview-status').textContent")
    assert f"{TRAFFIC} requests of main" in start
    rules = browser.eval(
        """(() => { const f = new FormData(document.querySelector('#policy-form'));
            const cats = {};
            for (const c of CATEGORIES) {
              cats[c] = {threshold: parseFloat(f.get(`categories.${c}.threshold`)),
                         enabled: f.get(`categories.${c}.enabled`) === 'on'};
            }
            return {mode: f.get('mode'), categories: cats}; })()""".replace(
            "CATEGORIES", json.dumps(list(CATEGORIES))
        )
    )
    api = httpx.post(
        f"{live_server}/v1/policies/main/preview",
        json={"rules": rules},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    ).json()
    assert api["requests"] == TRAFFIC
    assert api["categories"]["safety"]["candidate"]["rate"] == pytest.approx(after)
    _shot(browser, screenshots, "policy-editor")

    # An invalid value: the API's message appears next to the field while typing.
    seen = _updates(browser)
    _set(browser, "[name='categories.incomplete.threshold']", "1.7")
    _wait_preview(browser, seen, state="invalid")
    message = browser.text(".field-error[data-for='categories.incomplete.threshold']")
    assert message is not None and "less than or equal to 1" in message
    _shot(browser, screenshots, "policy-editor-validation")
    seen = _updates(browser)
    _set(browser, "[name='categories.incomplete.threshold']", "0.5")
    _wait_preview(browser, seen)
    assert browser.eval(
        "document.querySelector(\".field-error[data-for='categories.incomplete.threshold']\").hidden"
    )
    browser.fill("#f-reason", "safety stricter after the preview")
    browser.click("#save")
    assert browser.eval("location.pathname") == "/dashboard/policies/main"
    assert browser.text("#active-version") == "v4"
    assert "Saved v4" in (browser.text("#notice") or "")


def test_a_shadow_saved_from_the_editor_is_shown_against_live_and_promoted(
    browser: Browser, screenshots: Path, live_server: str, api_settings: Settings
) -> None:
    browser.goto(f"{live_server}/dashboard/policies/main/edit")
    _wait_preview(browser, 0)
    # v4 refuses safety from p >= 0.05; try 0.3 in shadow before enforcing it.
    _set(browser, "#rule-safety input.slider[data-mirror='categories.safety.threshold']", "0.3")
    browser.fill("#f-reason", "safety back to 0.3, in shadow first")
    browser.click("#save-shadow")
    assert browser.eval("location.pathname") == "/dashboard/policies/main/shadow"
    assert browser.text("#live-version") == "v4" and browser.text("#shadow-version") == "v5"
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        tenant = browser.eval("document.querySelector('#tenant-name').textContent")
        policy = session.scalars(
            select(Policy)
            .join(Tenant, Tenant.id == Policy.tenant_id)
            .where(Tenant.name == tenant, Policy.name == "main")
        ).one()
        seed_shadow_traffic(session, policy, n=TRAFFIC, seed=12)
    browser.goto(f"{live_server}/dashboard/policies/main/shadow")
    live = float(browser.eval("document.querySelector('#shadow-safety').dataset.live"))
    shadow = float(browser.eval("document.querySelector('#shadow-safety').dataset.shadow"))
    assert shadow < live
    _shot(browser, screenshots, "shadow")
    browser.click("#promote")
    assert browser.eval("location.pathname") == "/dashboard/policies/main"
    assert browser.text("#active-version") == "v5"
    assert "none" in (browser.text("#shadow-link") or "")


def test_a_new_policy_is_created_from_the_editor(
    browser: Browser,
    screenshots: Path,
    live_server: str,
    admin_key: str,
) -> None:
    browser.goto(f"{live_server}/dashboard/policies")
    browser.click("#new-policy")
    assert browser.eval("location.pathname") == "/dashboard/new/policy"
    _wait_preview(browser, 0)  # replayed on the default policy's traffic
    browser.fill("#f-name", "kids app")  # a space: the API's name rule refuses it
    browser.click("#save")
    message = browser.text(".field-error[data-for='name']")
    assert message is not None and "pattern" in message
    browser.fill("#f-name", "kids-app")
    browser.click("#save")
    assert browser.eval("location.pathname") == "/dashboard/policies/kids-app"
    assert browser.text("#active-version") == "v1"


def test_a_key_is_shown_once_and_revoked(
    browser: Browser,
    screenshots: Path,
    live_server: str,
    admin_key: str,
) -> None:
    browser.goto(f"{live_server}/dashboard/keys")
    browser.fill("#key-name", "checkout-service")
    browser.click("#create-key")
    secret = browser.text("#new-secret")
    assert secret is not None and secret.strip().startswith("rcs_")
    headers = {"Authorization": f"Bearer {secret.strip()}"}
    assert httpx.get(f"{live_server}/v1/models", headers=headers, timeout=10).status_code == 200
    _shot(browser, screenshots, "keys")
    browser.goto(f"{live_server}/dashboard/keys")
    assert browser.count("#new-secret") == 0
    row = "#keys tbody tr:first-child"
    assert "checkout-service" in (browser.text(f"{row} td") or "")
    browser.click(f"{row} button.revoke")
    assert "Revoked checkout-service" in (browser.text("#notice") or "")
    assert httpx.get(f"{live_server}/v1/models", headers=headers, timeout=10).status_code == 401


def test_a_calibration_starts_from_an_uploaded_jsonl_and_is_watched(
    browser: Browser,
    screenshots: Path,
    live_server: str,
    admin_key: str,
    api_settings: Settings,
    tmp_path: Path,
) -> None:
    redis.Redis.from_url(LIVE_BROKER).flushdb()
    upload = tmp_path / "prompts.jsonl"
    labels = ("safety", "incomplete", "respond")
    upload.write_text(
        "\n".join(
            json.dumps({"prompt": f"calibration prompt {i}", "label": labels[i % 3]})
            for i in range(PROMPTS)
        )
    )
    browser.goto(f"{live_server}/dashboard/calibrations")
    browser.click("#new-calibration")
    _set(browser, "#c-policy", "main", "change")
    _set(browser, "#c-kind", "labelled", "change")
    browser.fill("#c-target-safety", "0.8")
    browser.fill("#c-target-incomplete", "0.3")
    document = browser.send("DOM.getDocument")
    node = browser.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#c-file")
    browser.send("DOM.setFileInputFiles", files=[str(upload)], nodeId=node["nodeId"])
    _shot(browser, screenshots, "calibration-new")
    browser.click("#start-calibration")
    path = browser.eval("location.pathname")
    assert path.startswith("/dashboard/calibrations/")
    run_id = uuid.UUID(path.rsplit("/", 1)[1])
    assert browser.text("#run-status") == "queued"
    assert browser.text("#progress-text") == f"0 / {PROMPTS}"
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with session_scope(factory) as session:  # as the worker would
        runs.mark_run_running(session=session, run_id=run_id)
        runs.update_progress(session=session, run_id=run_id, done=PROMPTS // 3)
    browser.wait_for(
        f"document.querySelector('#progress-text').textContent === '{PROMPTS // 3} / {PROMPTS}'"
    )
    assert browser.text("#run-status") == "running"


def test_generations_filter_and_a_leak_opens_with_its_phrase(
    browser: Browser,
    screenshots: Path,
    live_server: str,
    admin_key: str,
) -> None:
    browser.goto(f"{live_server}/dashboard/generations")
    assert browser.count("#generations tbody tr") == 50
    assert browser.count("#older") == 1
    _shot(browser, screenshots, "generations")
    _set(browser, "#generation-filters select[name=refused]", "yes", "change")
    browser.click("#generation-filters button")
    decisions = browser.eval(
        "[...document.querySelectorAll('#generations tbody tr')].map(r => r.dataset.decision)"
    )
    assert decisions and set(decisions) <= set(CATEGORIES)
    browser.goto(f"{live_server}/dashboard/leaks")
    assert browser.count("#leak-rates tbody tr") >= 1
    assert browser.count("#leak-examples tbody tr") >= 1
    _shot(browser, screenshots, "leaks")
    browser.click("#leak-examples tbody tr:first-child a")
    assert browser.count("#leak-badge") == 1
    assert browser.count("#output mark.leak") == 1
    _shot(browser, screenshots, "generation-leak")
