"""Dashboard writes over HTTP on a real PostgreSQL: validation next to the field (the API's own
models), CSRF on every write, audit entries, the key secret shown once, calibration uploads,
the generations browser and leak view, the live preview, and one tenant never seeing another."""

from __future__ import annotations

import html as html_lib
import json
import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.categories import CATEGORIES
from core.settings import Settings
from db.models import AuditEntry, CalibrationRun, Generation, Policy, PolicyVersion
from db.repositories.policies import get_policy_by_name
from db.session import create_session_factory, session_scope
from tests.api.conftest import TenantKeys, make_tenant, set_policy
from tests.dashboard.conftest import csrf_of, sign_in
from tests.dashboard.seed import seed_generations, seed_shadow_traffic

pytestmark = pytest.mark.integration


def _rule_fields(**overrides: str) -> dict[str, str]:
    """The editor's fields for a threshold policy, every category on at 0.5."""
    fields = {"mode": "threshold"}
    for c in CATEGORIES:
        p = f"categories.{c}."
        fields.update(
            {
                p + "enabled": "on",
                p + "threshold": "0.5",
                p + "bias": "0",
                p + "target_rate": "",
                p + "min_threshold": "0",
                p + "max_threshold": "1",
                p + "refusal_message": "",
            }
        )
    fields.update(overrides)
    return fields


def _error_next_to(html: str, field: str) -> str | None:
    found = re.search(
        rf'<span class="field-error" data-for="{re.escape(field)}">([^<]*)</span>', html
    )
    return html_lib.unescape(found.group(1)) if found else None


@pytest.fixture
def admin(client: TestClient, api_settings: Settings) -> TenantKeys:
    keys = make_tenant(api_settings, f"t-{uuid.uuid4().hex[:8]}")
    sign_in(client, keys.admin)
    return keys


def _audit(settings: Settings, tenant_id: uuid.UUID, action: str) -> list[AuditEntry]:
    with session_scope(create_session_factory(settings.sqlalchemy_url)) as session:
        return list(
            session.scalars(
                select(AuditEntry).where(
                    AuditEntry.tenant_id == tenant_id, AuditEntry.action == action
                )
            )
        )


def test_invalid_policy_fields_get_the_apis_message_next_to_them_and_nothing_is_saved(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    form = _rule_fields(
        **{
            "categories.safety.threshold": "1.5",
            "categories.humanizing.bias": "lots",
            "categories.incomplete.threshold": "abc",
            "categories.unsupported.min_threshold": "0.8",
            "categories.unsupported.max_threshold": "0.2",
        }
    )
    form.update(name="bad name!", csrf=csrf_of(client))
    response = client.post("/dashboard/new/policy", data=form)
    assert response.status_code == 422
    html = response.text
    assert "less than or equal to 1" in (_error_next_to(html, "categories.safety.threshold") or "")
    assert 'number or "off"' in (_error_next_to(html, "categories.humanizing.bias") or "")
    assert "valid number" in (_error_next_to(html, "categories.incomplete.threshold") or "")
    bounds = _error_next_to(html, "categories.unsupported.max_threshold") or ""
    assert "must be >= min_threshold" in bounds
    assert "pattern" in (_error_next_to(html, "name") or "")
    assert 'value="1.5"' in html  # the operator's input is kept, not reset
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        names = session.scalars(select(Policy.name).where(Policy.tenant_id == admin.tenant_id))
        assert list(names) == ["default"]


def test_creating_and_editing_a_policy_makes_audited_versions_and_refuses_stale_edits(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    token = csrf_of(client)
    create = _rule_fields(
        **{
            "categories.safety.threshold": "0.3",
            "categories.safety.target_rate": "0.2",
            "categories.safety.auto_tune": "on",
            "categories.safety.refusal_message": "Sorry, not here.",
        }
    )
    create.update(name="kids-app", reason="first cut", csrf=token)
    response = client.post("/dashboard/new/policy", data=create, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/policies/kids-app")
    via_api = client.get("/v1/policies/kids-app", headers=admin.headers()).json()
    safety = via_api["active_version"]["rules"]["categories"]["safety"]
    assert safety["threshold"] == 0.3 and safety["target_rate"] == 0.2 and safety["auto_tune"]
    assert safety["refusal_message"] == "Sorry, not here."
    assert via_api["active_version"]["created_by"].startswith("key:")

    edit = client.get("/dashboard/policies/kids-app/edit").text
    assert 'name="expected_version" value="1"' in edit
    assert 'value="Sorry, not here."' in edit
    new_version = _rule_fields(**{"categories.safety.enabled": ""})
    new_version.update(mode="bias", expected_version="1", reason="bias mode", csrf=token)
    del new_version["categories.safety.enabled"]  # an unchecked box is not sent
    saved = client.post("/dashboard/policies/kids-app/edit", data=new_version)
    assert saved.status_code == 200 and "Saved v2" in saved.text
    rules = client.get("/v1/policies/kids-app", headers=admin.headers()).json()["active_version"]
    assert rules["version"] == 2 and rules["mode"] == "bias"
    assert rules["rules"]["categories"]["safety"]["enabled"] is False

    stale = client.post("/dashboard/policies/kids-app/edit", data=new_version)  # opened on v1
    assert stale.status_code == 409 and "v2 is now active, not v1" in stale.text
    versions = client.get("/v1/policies/kids-app/versions", headers=admin.headers()).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert len(_audit(api_settings, admin.tenant_id, "policy.create")) == 2  # default + kids-app
    assert len(_audit(api_settings, admin.tenant_id, "policy.version.create")) == 1
    taken = client.post("/dashboard/new/policy", data=create)
    assert taken.status_code == 409
    assert "already exists" in (_error_next_to(taken.text, "name") or "")


def test_every_dashboard_write_needs_the_sessions_csrf_token(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    writes: list[tuple[str, dict[str, Any]]] = [
        ("/dashboard/new/policy", {**_rule_fields(), "name": "p1"}),
        ("/dashboard/policies/default/edit", _rule_fields()),
        ("/dashboard/preview", {**_rule_fields(), "replay_on": "default"}),
        ("/dashboard/keys", {"name": "k", "role": "client"}),
        (f"/dashboard/keys/{uuid.uuid4()}/revoke", {}),
        ("/dashboard/new/calibration", {"policy": "default", "targets.safety": "0.1"}),
    ]
    for url, data in writes:
        for token in (None, "forged"):
            body = data if token is None else {**data, "csrf": token}
            response = client.post(url, data=body)
            assert response.status_code == 403, url
            assert "Form expired" in response.text, url
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        versions = session.scalars(
            select(PolicyVersion.id)
            .join(Policy, Policy.id == PolicyVersion.policy_id)
            .where(Policy.tenant_id == admin.tenant_id)
        )
        assert len(list(versions)) == 1
        runs = session.scalars(
            select(CalibrationRun.id).where(CalibrationRun.tenant_id == admin.tenant_id)
        )
        assert list(runs) == []


def test_a_new_keys_secret_is_shown_once_and_revoking_it_takes_effect(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    token = csrf_of(client)
    bad = client.post("/dashboard/keys", data={"name": "", "role": "root", "csrf": token})
    assert bad.status_code == 422
    assert "at least 1 character" in (_error_next_to(bad.text, "name") or "")
    assert "'tenant_admin' or 'client'" in (_error_next_to(bad.text, "role") or "")
    made = client.post(
        "/dashboard/keys", data={"name": "ops", "role": "tenant_admin", "csrf": token}
    )
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    secret = re.search(r'id="new-secret">([^<]+)<', made.text)
    assert secret is not None
    new_key = secret.group(1).strip()
    assert new_key not in client.get("/dashboard/keys").text  # shown once only
    assert client.get("/v1/keys", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    key_id = next(
        k["id"]
        for k in client.get("/v1/keys", headers=admin.headers()).json()
        if k["name"] == "ops"
    )
    revoked = client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 200 and "Revoked ops" in revoked.text
    assert client.get("/v1/keys", headers={"Authorization": f"Bearer {new_key}"}).status_code == 401
    creates = _audit(api_settings, admin.tenant_id, "api_key.create")
    assert any(e.actor.startswith("key:") and e.after and e.after["name"] == "ops" for e in creates)
    assert len(_audit(api_settings, admin.tenant_id, "api_key.revoke")) == 1
    # The tenant's last admin key (the signed-in one) cannot be revoked.
    own = next(
        k["id"]
        for k in client.get("/v1/keys", headers=admin.headers()).json()
        if k["role"] == "tenant_admin" and k["revoked_at"] is None
    )
    last = client.post(f"/dashboard/keys/{own}/revoke", data={"csrf": token})
    assert last.status_code == 409 and "last admin key" in last.text


def test_a_calibration_upload_is_validated_by_line_then_started_audited_and_watched(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    token = csrf_of(client)
    form = {"csrf": token, "policy": "default", "targets.safety": "0.3", "holdout_fraction": "0.2"}
    lines = [json.dumps({"prompt": f"question {i}", "label": "safety"}) for i in range(20)]
    broken = "\n".join([lines[0], '{"prompt": 5}', *lines[2:]]).encode()
    bad = client.post(
        "/dashboard/new/calibration", data=form, files={"file": ("p.jsonl", broken, "text/plain")}
    )
    assert bad.status_code == 422
    assert "line 2" in (_error_next_to(bad.text, "file") or "")
    wrong_target = client.post(
        "/dashboard/new/calibration",
        data={**form, "targets.safety": "1.7"},
        files={"file": ("p.jsonl", "\n".join(lines).encode(), "text/plain")},
    )
    assert wrong_target.status_code == 422
    assert "must be in [0, 1]" in (_error_next_to(wrong_target.text, "targets") or "")
    started = client.post(
        "/dashboard/new/calibration",
        data=form,
        files={"file": ("p.jsonl", "\n".join(lines).encode(), "text/plain")},
        follow_redirects=False,
    )
    assert started.status_code == 303
    run_id = started.headers["location"].rsplit("/", 1)[1]
    run = client.get(f"/v1/calibrations/{run_id}", headers=admin.headers()).json()
    assert run["status"] == "queued" and run["progress"] == {"done": 0, "total": 20}
    assert run["targets"] == {"safety": 0.3}
    page = client.get(f"/dashboard/calibrations/{run_id}").text
    assert 'id="progress-script"' in page  # the page follows the run's progress
    entries = _audit(api_settings, admin.tenant_id, "calibration.create")
    assert [e.entity_id for e in entries] == [run_id]


def test_generations_filter_page_and_stay_inside_the_tenant(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    other = make_tenant(api_settings, f"o-{uuid.uuid4().hex[:8]}")
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with session_scope(factory) as session:
        mine = get_policy_by_name(session=session, tenant_id=admin.tenant_id, name="default")
        theirs = get_policy_by_name(session=session, tenant_id=other.tenant_id, name="default")
        seed_generations(session, mine, n=70, seed=1)
        seed_generations(session, theirs, n=30, seed=2)
        my_rows = list(
            session.scalars(select(Generation).where(Generation.tenant_id == admin.tenant_id))
        )
        their_id = session.scalar(
            select(Generation.id).where(Generation.tenant_id == other.tenant_id)
        )
        version = str(mine.active_version_id)
    first = client.get("/dashboard/generations").text
    shown = re.findall(r'<tr data-id="([^"]+)"', first)
    assert len(shown) == 50 and set(shown) <= {str(r.id) for r in my_rows}
    older = re.search(r'href="\?([^"]+)" id="older"', first)
    assert older is not None
    second = client.get("/dashboard/generations?" + older.group(1).replace("&amp;", "&")).text
    assert len(re.findall(r'<tr data-id="', second)) == 20
    refused = client.get("/dashboard/generations?refused=yes").text
    decisions = set(re.findall(r'data-decision="([^"]+)"', refused))
    assert decisions and decisions <= set(CATEGORIES)
    safety = client.get(f"/dashboard/generations?category=safety&version={version}").text
    expected = sum(1 for r in my_rows if r.refusal_category == "safety")
    assert len(re.findall(r'<tr data-id="', safety)) == min(expected, 50)
    answered = client.get("/dashboard/generations?refused=no").text
    assert set(re.findall(r'data-decision="([^"]+)"', answered)) == {"respond"}
    leak = next(r for r in my_rows if r.leak)
    detail = client.get(f"/dashboard/generations/{leak.id}").text
    assert f'<mark class="leak">{leak.leak_phrase}</mark>' in html_lib.unescape(detail)
    assert client.get(f"/dashboard/generations/{their_id}").status_code == 404


def test_leak_view_shows_rates_per_version_and_category_with_examples(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with session_scope(factory) as session:
        policy = get_policy_by_name(session=session, tenant_id=admin.tenant_id, name="default")
        leaks = seed_generations(session, policy, n=64, seed=3)
        answered = session.scalars(
            select(Generation).where(
                Generation.tenant_id == admin.tenant_id, Generation.refused.is_(False)
            )
        ).all()
    assert leaks > 0
    html = client.get("/dashboard/leaks").text
    rows = re.findall(
        r'data-category="([a-z]+)" data-rate="([0-9.]+)">\s*<td>([^<]+)</td><td>[a-z]+</td>'
        r"<td>(\d+)</td><td>(\d+)</td>",
        html,
    )
    assert rows and {r[2] for r in rows} == {"default v1"}
    assert sum(int(r[4]) for r in rows) == leaks
    assert all(float(r[1]) == pytest.approx(int(r[4]) / int(r[3])) for r in rows)
    assert f"{leaks} of {len(answered)} checked answers" in html
    assert html.count("/dashboard/generations/") == min(leaks, 20)


def test_the_live_preview_replays_the_forms_rules_over_recent_traffic(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with session_scope(factory) as session:
        policy = get_policy_by_name(session=session, tenant_id=admin.tenant_id, name="default")
        seed_generations(session, policy, n=200, seed=4)
    token = csrf_of(client)

    def preview(threshold: str) -> Any:
        form = _rule_fields(**{"categories.safety.threshold": threshold})
        form.update(replay_on="default", window="1h", csrf=token)
        return client.post("/dashboard/preview", data=form)

    strict, loose = preview("0.05"), preview("0.95")
    assert strict.status_code == loose.status_code == 200
    a, b = strict.json(), loose.json()
    assert a["requests"] == b["requests"] == 200
    safety_strict, safety_loose = a["categories"]["safety"], b["categories"]["safety"]
    assert safety_strict["candidate"]["rate"] > safety_loose["candidate"]["rate"]
    assert safety_strict["served"] == safety_loose["served"]  # what was served does not move
    low, high = safety_strict["candidate"]["low"], safety_strict["candidate"]["high"]
    assert low <= safety_strict["candidate"]["rate"] <= high
    invalid = preview("2")
    assert invalid.status_code == 422
    assert "categories.safety.threshold" in invalid.json()["errors"]


def test_dashboard_writes_never_reach_another_tenants_rows(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    other = make_tenant(api_settings, f"o-{uuid.uuid4().hex[:8]}")
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        seed_generations(
            session,
            get_policy_by_name(session=session, tenant_id=other.tenant_id, name="default"),
            n=20,
            seed=5,
        )
    set_policy(client, other, "theirs", {"mode": "threshold"})
    their_key = next(
        k["id"]
        for k in client.get("/v1/keys", headers=other.headers()).json()
        if k["name"] == "client"
    )
    token = csrf_of(client)
    revoke = client.post(f"/dashboard/keys/{their_key}/revoke", data={"csrf": token})
    assert revoke.status_code == 404
    assert client.get("/v1/models", headers=other.headers("client")).status_code == 200
    assert client.get("/dashboard/policies/theirs/edit").status_code == 404
    edit = client.post("/dashboard/policies/theirs/edit", data={**_rule_fields(), "csrf": token})
    assert edit.status_code == 404
    form = {**_rule_fields(), "replay_on": "theirs", "csrf": token}
    assert client.post("/dashboard/preview", data=form).status_code == 404
    upload = json.dumps({"prompt": "hi"}).encode()
    started = client.post(
        "/dashboard/new/calibration",
        data={"csrf": token, "policy": "theirs", "targets.safety": "0.2"},
        files={"file": ("p.jsonl", upload, "text/plain")},
    )
    assert started.status_code == 404
    assert "theirs" in (_error_next_to(started.text, "policy") or "")
    # Their traffic is not in this tenant's lists or in its preview of its own default policy.
    assert "No generations match" in client.get("/dashboard/generations").text
    own = client.post("/dashboard/preview", data={**form, "replay_on": "default"}).json()
    assert own["requests"] == 0
    versions = client.get("/v1/policies/theirs/versions", headers=other.headers()).json()
    assert len(versions) == 1


def test_a_shadow_saved_from_the_editor_is_compared_then_promoted_in_one_audited_step(
    client: TestClient, admin: TenantKeys, api_settings: Settings
) -> None:
    token = csrf_of(client)
    assert "no shadow version" in client.get("/dashboard/policies/default/shadow").text
    form = _rule_fields(**{"categories.safety.threshold": "0.1"})
    form.update(as_shadow="1", expected_version="1", reason="try stricter", csrf=token)
    saved = client.post("/dashboard/policies/default/edit", data=form, follow_redirects=False)
    assert (
        saved.status_code == 303
        and "/dashboard/policies/default/shadow" in saved.headers["location"]
    )
    policy = client.get("/v1/policies/default", headers=admin.headers()).json()
    assert policy["active_version"]["version"] == 1  # the shadow is not enforced
    with session_scope(create_session_factory(api_settings.sqlalchemy_url)) as session:
        found = get_policy_by_name(session=session, tenant_id=admin.tenant_id, name="default")
        assert found.shadow_version is not None and found.shadow_version.version == 2
        seed_shadow_traffic(session, found, n=300, seed=6)
    html = client.get("/dashboard/policies/default/shadow").text
    found_rows = re.findall(
        r'<tr id="shadow-([a-z]+)" data-live="([0-9.]*)" data-shadow="([0-9.]*)"', html
    )
    rows = {c: (live, shadow) for c, live, shadow in found_rows}
    assert set(rows) == set(CATEGORIES)
    assert float(rows["safety"][1]) > float(rows["safety"][0])  # threshold 0.1 refuses more
    assert "v1</b>" in html and "v2</b>" in html
    url = "/dashboard/policies/default/shadow/promote"
    assert client.post(url, data={"expected_version": "1"}).status_code == 403
    stale = client.post(url, data={"expected_version": "7", "csrf": token})
    assert stale.status_code == 409
    promoted = client.post(url, data={"expected_version": "1", "csrf": token})
    assert promoted.status_code == 200 and "v2 is now active" in promoted.text
    policy = client.get("/v1/policies/default", headers=admin.headers()).json()
    assert policy["active_version"]["version"] == 2
    assert len(_audit(api_settings, admin.tenant_id, "policy.shadow.set")) == 1
    assert len(_audit(api_settings, admin.tenant_id, "policy.shadow.promote")) == 1
    assert "no shadow version" in client.get("/dashboard/policies/default/shadow").text
