"""Tenants (platform admins) and API keys (tenant admins) over HTTP on a real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.settings import Settings
from db.models import ApiKey
from db.session import create_session_factory
from tests.api.conftest import TenantKeys


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_name(label: str = "t") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def test_platform_admin_creates_a_tenant_whose_key_is_its_admin(
    client: TestClient, platform_key: str
) -> None:
    name = new_name()
    response = client.post(
        "/v1/tenants",
        json={"name": name, "requests_per_minute": 5, "max_tokens": 256},
        headers=bearer(platform_key),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == name
    key = created["api_key"]
    assert key.startswith("rcs_")
    # The key is the new tenant's admin: it manages policies, but not tenants.
    policies = client.get("/v1/policies", headers=bearer(key)).json()
    assert [(p["name"], p["is_default"]) for p in policies] == [("default", True)]
    assert client.get("/v1/tenants", headers=bearer(key)).status_code == 403
    listed = client.get("/v1/tenants", headers=bearer(platform_key))
    assert listed.status_code == 200
    mine = [t for t in listed.json() if t["name"] == name]
    assert len(mine) == 1
    assert mine[0]["id"] == created["tenant_id"]
    assert mine[0]["active"] is True
    assert mine[0]["quotas"] == {"requests_per_minute": 5, "max_tokens": 256}
    assert "api_key" not in mine[0]


def test_tenant_name_clash_is_409_and_creates_nothing(
    client: TestClient, platform_key: str
) -> None:
    name = new_name()
    assert (
        client.post("/v1/tenants", json={"name": name}, headers=bearer(platform_key)).status_code
        == 201
    )
    count = len(client.get("/v1/tenants", headers=bearer(platform_key)).json())
    again = client.post("/v1/tenants", json={"name": name}, headers=bearer(platform_key))
    assert again.status_code == 409
    assert again.json()["error"] == {
        "type": "already_exists",
        "message": again.json()["error"]["message"],
        "field": "name",
    }
    assert len(client.get("/v1/tenants", headers=bearer(platform_key)).json()) == count


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "no spaces please"}, "name"),
        ({"name": "ok", "requests_per_minute": 0}, "requests_per_minute"),
        ({"name": "ok", "max_tokens": 10**9}, "max_tokens"),
        ({"name": "ok", "active": False}, "active"),
    ],
)
def test_invalid_tenant_is_422_naming_the_field(
    client: TestClient, platform_key: str, body: dict, field: str
) -> None:
    response = client.post("/v1/tenants", json=body, headers=bearer(platform_key))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_tenant_admins_and_clients_cannot_list_or_create_tenants(
    client: TestClient, tenant_a: TenantKeys
) -> None:
    for role in ("admin", "client"):
        assert client.get("/v1/tenants", headers=tenant_a.headers(role)).status_code == 403
        created = client.post(
            "/v1/tenants", json={"name": new_name()}, headers=tenant_a.headers(role)
        )
        assert created.status_code == 403
        assert created.json()["error"]["type"] == "forbidden"


def test_a_client_key_is_shown_once_and_listed_by_prefix_only(
    client: TestClient, tenant_a: TenantKeys
) -> None:
    response = client.post(
        "/v1/keys", json={"name": "mobile-app", "role": "client"}, headers=tenant_a.headers()
    )
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["api_key"]
    assert secret.startswith(f"rcs_{created['prefix']}_")
    assert created["role"] == "client" and created["revoked_at"] is None
    # The new key authenticates as a client: a tenant admin route is 403, not 401.
    assert client.get("/v1/policies", headers=bearer(secret)).status_code == 403
    listing = client.get("/v1/keys", headers=tenant_a.headers())
    assert listing.status_code == 200
    [listed] = [k for k in listing.json() if k["id"] == created["id"]]
    for name in ("name", "role", "prefix", "created_at", "revoked_at"):
        assert listed[name] == created[name]
    assert "api_key" not in listed and "secret_hash" not in listed
    # No part of the secret beyond the public prefix is ever shown again.
    assert secret.split("_", 2)[2] not in listing.text


def test_revoked_key_gets_401_and_revoking_is_idempotent(
    client: TestClient, tenant_a: TenantKeys
) -> None:
    created = client.post(
        "/v1/keys", json={"name": "temp", "role": "client"}, headers=tenant_a.headers()
    ).json()
    assert client.get("/v1/models", headers=bearer(created["api_key"])).status_code == 200
    revoked = client.delete(f"/v1/keys/{created['id']}", headers=tenant_a.headers())
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    after = client.get("/v1/models", headers=bearer(created["api_key"]))
    assert after.status_code == 401
    assert after.json()["error"]["type"] == "unauthenticated"
    again = client.delete(f"/v1/keys/{created['id']}", headers=tenant_a.headers())
    assert again.status_code == 200
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    listed = {k["id"]: k for k in client.get("/v1/keys", headers=tenant_a.headers()).json()}
    assert listed[created["id"]]["revoked_at"] == revoked.json()["revoked_at"]


def test_a_tenant_admin_can_revoke_its_own_key(client: TestClient, tenant_a: TenantKeys) -> None:
    second = client.post(
        "/v1/keys", json={"name": "admin-2", "role": "tenant_admin"}, headers=tenant_a.headers()
    ).json()
    assert client.get("/v1/keys", headers=bearer(second["api_key"])).status_code == 200
    gone = client.delete(f"/v1/keys/{second['id']}", headers=bearer(second["api_key"]))
    assert gone.status_code == 200
    assert client.get("/v1/keys", headers=bearer(second["api_key"])).status_code == 401
    assert client.get("/v1/keys", headers=tenant_a.headers()).status_code == 200


def test_keys_cannot_escalate_to_platform_admin(client: TestClient, tenant_a: TenantKeys) -> None:
    response = client.post(
        "/v1/keys", json={"name": "root", "role": "platform_admin"}, headers=tenant_a.headers()
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "role"
    smuggled = client.post(
        "/v1/keys",
        json={"name": "x", "tenant_id": str(uuid.uuid4())},
        headers=tenant_a.headers(),
    )
    assert smuggled.status_code == 422
    assert smuggled.json()["error"]["field"] == "tenant_id"


def test_tenant_admin_cannot_revoke_other_tenants_or_platform_keys(
    client: TestClient,
    tenant_a: TenantKeys,
    tenant_b: TenantKeys,
    platform_key: str,
    api_settings: Settings,
) -> None:
    b_key = client.post(
        "/v1/keys", json={"name": "b", "role": "client"}, headers=tenant_b.headers()
    ).json()
    assert client.delete(f"/v1/keys/{b_key['id']}", headers=tenant_a.headers()).status_code == 404
    assert client.get("/v1/models", headers=bearer(b_key["api_key"])).status_code == 200
    roles = {k["role"] for k in client.get("/v1/keys", headers=tenant_a.headers()).json()}
    assert "platform_admin" not in roles
    # A platform key's id is unknown to a tenant admin, like any other id outside the tenant.
    with create_session_factory(api_settings.sqlalchemy_url)() as session:
        prefix = platform_key.split("_")[1]
        platform_id = session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
    assert client.delete(f"/v1/keys/{platform_id}", headers=tenant_a.headers()).status_code == 404
    assert client.delete(f"/v1/keys/{uuid.uuid4()}", headers=tenant_a.headers()).status_code == 404
    assert client.get("/v1/tenants", headers=bearer(platform_key)).status_code == 200


def test_clients_cannot_manage_keys(client: TestClient, tenant_a: TenantKeys) -> None:
    headers = tenant_a.headers("client")
    assert client.get("/v1/keys", headers=headers).status_code == 403
    assert (
        client.post("/v1/keys", json={"name": "x", "role": "client"}, headers=headers).status_code
        == 403
    )
