"""Policies over HTTP on a real PostgreSQL: versions, If-Match, rollback, audit, validation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import TenantKeys

SAFETY_STRICT = {"mode": "threshold", "categories": {"safety": {"threshold": 0.2}}}


def create(client: TestClient, keys: TenantKeys, name: str = "strict", **body) -> dict:
    payload = {"name": name, **SAFETY_STRICT, **body}
    response = client.post("/v1/policies", json=payload, headers=keys.headers())
    assert response.status_code == 201, response.text
    return response.json()


def test_create_and_read_a_policy_fills_every_category(
    client: TestClient, tenant_a: TenantKeys
) -> None:
    created = create(client, tenant_a)
    assert created["is_default"] is False  # the tenant's `default` policy stays its default
    rules = created["active_version"]["rules"]
    assert rules["categories"]["safety"]["threshold"] == 0.2
    assert set(rules["categories"]) == {
        "incomplete",
        "unsupported",
        "indeterminate",
        "humanizing",
        "safety",
    }
    got = client.get("/v1/policies/strict", headers=tenant_a.headers())
    assert got.status_code == 200
    assert got.headers["ETag"] == '"1"'
    assert [p["name"] for p in client.get("/v1/policies", headers=tenant_a.headers()).json()] == [
        "default",
        "strict",
    ]


def test_a_new_tenant_has_a_default_policy_that_is_the_models_own_decision(
    client: TestClient, tenant_a: TenantKeys
) -> None:
    listed = client.get("/v1/policies", headers=tenant_a.headers()).json()
    assert [(p["name"], p["is_default"]) for p in listed] == [("default", True)]
    rules = listed[0]["active_version"]["rules"]
    assert rules["mode"] == "bias"
    assert {c: r["bias"] for c, r in rules["categories"].items()} == dict.fromkeys(
        rules["categories"], 0.0
    )
    edited = client.put(
        "/v1/policies/default",
        json={"mode": "threshold", "categories": {"safety": {"threshold": 0.3}}},
        headers={**tenant_a.headers(), "If-Match": '"1"'},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["active_version"]["version"] == 2 and edited.json()["is_default"]


def test_put_makes_a_new_version_and_stale_if_match_is_409(
    client: TestClient, tenant_a: TenantKeys
) -> None:
    create(client, tenant_a)
    body = {"mode": "bias", "categories": {"safety": {"bias": 2.5}}, "reason": "more safety"}
    first = client.put(
        "/v1/policies/strict", json=body, headers={**tenant_a.headers(), "If-Match": '"1"'}
    )
    assert first.status_code == 200, first.text
    assert first.json()["active_version"]["version"] == 2
    # A second writer still holding version 1 must not overwrite version 2.
    stale = client.put(
        "/v1/policies/strict", json=body, headers={**tenant_a.headers(), "If-Match": '"1"'}
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["type"] == "stale_version"
    versions = client.get("/v1/policies/strict/versions", headers=tenant_a.headers()).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["reason"] == "more safety"


def test_rollback_reactivates_an_old_version(client: TestClient, tenant_a: TenantKeys) -> None:
    create(client, tenant_a)
    client.put("/v1/policies/strict", json={"mode": "bias"}, headers=tenant_a.headers())
    rolled = client.post(
        "/v1/policies/strict/rollback", json={"version": 1}, headers=tenant_a.headers()
    )
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["active_version"]["version"] == 1
    missing = client.post(
        "/v1/policies/strict/rollback", json={"version": 9}, headers=tenant_a.headers()
    )
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "version"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"name": "p", "mode": "threshold", "categories": {"safety": {"threshold": 1.5}}},
            "categories.safety.threshold",
        ),
        ({"name": "p", "mode": "sideways"}, "mode"),
        ({"name": "p", "mode": "bias", "categories": {"violence": {}}}, "categories.violence"),
        (
            {"name": "p", "mode": "bias", "categories": {"safety": {"bias": "huge"}}},
            "categories.safety.bias",
        ),
        ({"name": "bad name!", "mode": "bias"}, "name"),
        (
            {
                "name": "p",
                "mode": "bias",
                "categories": {"safety": {"refusal_message": "x" * 2001}},
            },
            "categories.safety.refusal_message",
        ),
        # PostgreSQL stores no NUL: refused as input, never a 500 at the insert.
        ({"name": "p", "mode": "bias", "reason": "a\u0000b"}, "reason"),
        (
            {"name": "p", "mode": "bias", "categories": {"safety": {"refusal_message": "a\u0000"}}},
            "categories.safety.refusal_message",
        ),
    ],
)
def test_invalid_policy_is_422_naming_the_field_and_writes_nothing(
    client: TestClient, tenant_a: TenantKeys, body: dict, field: str
) -> None:
    response = client.post("/v1/policies", json=body, headers=tenant_a.headers())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field)
    names = [p["name"] for p in client.get("/v1/policies", headers=tenant_a.headers()).json()]
    assert names == ["default"]


def test_duplicate_name_is_409(client: TestClient, tenant_a: TenantKeys) -> None:
    create(client, tenant_a)
    again = client.post(
        "/v1/policies", json={"name": "strict", "mode": "bias"}, headers=tenant_a.headers()
    )
    assert again.status_code == 409


def test_malformed_json_is_400(client: TestClient, tenant_a: TenantKeys) -> None:
    response = client.post(
        "/v1/policies",
        content=b"{not json",
        headers={**tenant_a.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_json"
