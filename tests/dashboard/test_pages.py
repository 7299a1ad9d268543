"""Dashboard pages over HTTP on a real PostgreSQL: sign-in, cookie flags, revocation, CSRF,
tenant choice, empty states and errors."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient

from core.intervals import wilson_interval
from core.settings import Settings
from db.repositories.tenants import create_api_key, find_api_key, revoke_api_key
from db.session import create_session_factory, session_scope
from tests.api.conftest import TEST_SECRET, make_tenant
from tests.dashboard.conftest import csrf_of, sign_in
from tests.dashboard.seed import (
    finish_calibration_run,
    seed_calibration_run,
    seed_policy_and_stats,
)

pytestmark = pytest.mark.integration


def _seed(settings: Settings):  # type: ignore[no-untyped-def]
    keys = make_tenant(settings, f"t-{uuid.uuid4().hex[:8]}")
    with session_scope(create_session_factory(settings.sqlalchemy_url)) as session:
        return keys, seed_policy_and_stats(session, keys.tenant_id)


def test_sign_in_sets_an_httponly_samesite_strict_cookie(
    client: TestClient, api_settings: Settings
) -> None:
    keys = make_tenant(api_settings, f"t-{uuid.uuid4().hex[:8]}")
    response = client.post("/dashboard/login", data={"api_key": keys.admin}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "rcs_dashboard=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert keys.admin not in cookie  # the key is exchanged, never stored in the cookie


def test_client_keys_and_unknown_keys_cannot_sign_in(
    client: TestClient, api_settings: Settings
) -> None:
    keys = make_tenant(api_settings, f"t-{uuid.uuid4().hex[:8]}")
    for key, message in ((keys.client, "needs the tenant_admin"), ("rcs_nope_x", "Unknown")):
        response = client.post("/dashboard/login", data={"api_key": key})
        assert response.status_code == 401
        assert message in response.text
        assert "set-cookie" not in response.headers


def test_pages_redirect_to_sign_in_without_a_session_and_with_a_forged_one(
    client: TestClient,
) -> None:
    for path in ("/dashboard", "/dashboard/policies", "/dashboard/audit"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/dashboard/login")
    client.cookies.set("rcs_dashboard", "eyJrIjoiMSJ9.forged", path="/dashboard")
    response = client.get("/dashboard/policies", follow_redirects=False)
    assert response.headers["location"] == "/dashboard/login?reason=expired"


def test_revoking_the_key_ends_its_dashboard_session(
    client: TestClient, api_settings: Settings
) -> None:
    keys = make_tenant(api_settings, f"t-{uuid.uuid4().hex[:8]}")
    sign_in(client, keys.admin)
    assert client.get("/dashboard/policies").status_code == 200
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        key = find_api_key(session=session, presented=keys.admin, secret=TEST_SECRET)
        assert key is not None
        create_api_key(  # the last admin key of a tenant cannot be revoked
            session=session,
            secret=TEST_SECRET,
            tenant_id=keys.tenant_id,
            role="tenant_admin",
            name="spare",
        )
        revoke_api_key(session=session, tenant_id=keys.tenant_id, key_id=key.id, actor="test")
    response = client.get("/dashboard/policies", follow_redirects=False)
    assert response.headers["location"] == "/dashboard/login?reason=revoked"


def test_rollback_needs_the_sessions_csrf_token(client: TestClient, api_settings: Settings) -> None:
    keys, _ = _seed(api_settings)
    sign_in(client, keys.admin)
    url = "/dashboard/policies/main/rollback"
    for token in ("", "wrong"):
        response = client.post(url, data={"version": 1, "csrf": token})
        assert response.status_code == 403
        assert "Form expired" in response.text
    assert 'id="active-version">v3<' in client.get("/dashboard/policies/main").text
    token = csrf_of(client, "/dashboard/policies/main")
    response = client.post(url, data={"version": 1, "csrf": token}, follow_redirects=False)
    assert response.status_code == 303
    assert 'id="active-version">v1<' in client.get("/dashboard/policies/main").text
    audit = client.get("/dashboard/audit?action=policy.activate").text
    assert "rollback from the dashboard" in audit


def test_sign_out_needs_csrf_and_clears_the_cookie(
    client: TestClient, api_settings: Settings
) -> None:
    keys = make_tenant(api_settings, f"t-{uuid.uuid4().hex[:8]}")
    sign_in(client, keys.admin)
    assert client.post("/dashboard/logout", data={"csrf": "x"}).status_code == 403
    token = csrf_of(client)
    response = client.post("/dashboard/logout", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 303
    assert 'rcs_dashboard=""' in response.headers["set-cookie"]


def test_platform_admin_picks_a_tenant_before_seeing_its_policies(
    client: TestClient, api_settings: Settings, platform_key: str
) -> None:
    keys, _ = _seed(api_settings)
    sign_in(client, platform_key)
    response = client.get("/dashboard/policies", follow_redirects=False)
    assert response.headers["location"] == "/dashboard/tenants"
    token = csrf_of(client, "/dashboard/tenants")
    bad = client.post("/dashboard/tenants", data={"tenant_id": str(uuid.uuid4()), "csrf": token})
    assert bad.status_code == 422
    client.post("/dashboard/tenants", data={"tenant_id": str(keys.tenant_id), "csrf": token})
    page = client.get("/dashboard/policies")
    assert page.status_code == 200
    assert 'class="active-version">v3<' in page.text


def test_a_tenant_admin_sees_only_its_own_tenant(
    client: TestClient, api_settings: Settings
) -> None:
    _, other = _seed(api_settings)
    keys = make_tenant(api_settings, f"t-{uuid.uuid4().hex[:8]}")
    sign_in(client, keys.admin)
    # Its tenant has only its own `default` policy: the other tenant's `main` is not found.
    assert client.get("/dashboard/policies/main").status_code == 404
    listing = client.get("/dashboard/policies").text
    assert "/dashboard/policies/default" in listing and "/dashboard/policies/main" not in listing
    assert "No calibration runs yet" in client.get("/dashboard/calibrations").text
    run = client.get(f"/dashboard/calibrations/{uuid.uuid4()}")
    assert run.status_code == 404 and "Calibration not found" in run.text
    assert other.policy_name == "main"


def test_category_view_points_targets_and_empty_ranges(
    client: TestClient, api_settings: Settings
) -> None:
    keys, seeded = _seed(api_settings)
    sign_in(client, keys.admin)
    page = client.get("/dashboard/categories?range=24h&bucket=3600&category=safety").text
    assert f'data-points="{seeded.hourly_points}"' in page
    assert page.count('class="target"') == 3  # one step per version in the range
    assert "No traffic in this range" not in page
    # The rate's 95% Wilson interval, from the same totals the page shows.
    shown = re.search(
        r'data-refusals="(\d+)" data-requests="(\d+)" data-low="([\d.e-]+)" data-high="([\d.e-]+)"',
        page,
    )
    assert shown is not None
    refusals, requests = int(shown[1]), int(shown[2])
    expected = wilson_interval(refusals, requests)
    assert requests > 0 and expected is not None
    assert (float(shown[3]), float(shown[4])) == pytest.approx((expected.low, expected.high))
    hour = client.get("/dashboard/categories?range=1h&bucket=60&category=safety").text
    assert 'data-points="1"' in hour or "No traffic in this range" in hour


def test_calibration_page_apply_activates_the_proposed_version(
    client: TestClient, api_settings: Settings
) -> None:
    keys, seeded = _seed(api_settings)
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        run_id = seed_calibration_run(session, seeded, total=10)
    sign_in(client, keys.admin)
    assert client.get(f"/dashboard/calibrations/{run_id}/progress").json() == {
        "status": "queued",
        "done": 0,
        "total": 10,
        "error": None,
    }
    token = csrf_of(client)
    early = client.post(f"/dashboard/calibrations/{run_id}/apply", data={"csrf": token})
    assert early.status_code == 409
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        proposed = finish_calibration_run(session, seeded, run_id)
    page = client.get(f"/dashboard/calibrations/{run_id}").text
    assert page.count('class="chart curve-chart"') == 2
    assert "TPR" in page
    done = client.post(f"/dashboard/calibrations/{run_id}/apply", data={"csrf": token})
    assert done.status_code == 200
    assert f"now at version {proposed}" in done.text
    assert 'id="applied"' in done.text


def test_audit_filters_by_entity_and_dates(client: TestClient, api_settings: Settings) -> None:
    keys, _ = _seed(api_settings)
    sign_in(client, keys.admin)
    keys_only = client.get("/dashboard/audit?entity=api_key").text
    assert '"badge">api_key.create<' in keys_only
    assert '"badge">policy.create<' not in keys_only
    future = client.get("/dashboard/audit?since=2999-01-01").text
    assert "No audit entries match" in future
    past = client.get("/dashboard/audit?until=2000-01-01").text
    assert "No audit entries match" in past
    bad = client.get("/dashboard/audit?since=yesterday").text
    assert "From must be a date" in bad
