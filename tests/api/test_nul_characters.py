"""A NUL character in JSON text is a 422 naming the field, and nothing is written or sent; the
same six characters written out (a backslash, `u0000`) are ordinary text."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api.nul_characters import nul_path
from tests.api.conftest import RecordingSender, TenantKeys


def test_the_first_string_holding_a_nul_is_named() -> None:
    assert nul_path({"a": ["x", {"b": "y\x00"}]}) == ("a", 1, "b")
    assert nul_path({"k\x00": 1}) == ("k\x00",)
    assert nul_path({"a": "\\u0000", "n": 0, "f": None}) is None


def test_a_prompt_with_a_nul_writes_and_sends_nothing(
    client: TestClient, tenant_a: TenantKeys, sender: RecordingSender
) -> None:
    before = client.get("/v1/generations", headers=tenant_a.headers()).json()
    response = client.post(
        "/v1/generations",
        content=json.dumps({"prompt": "a\x00b", "wait": False}),
        headers={**tenant_a.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "prompt"
    assert client.get("/v1/generations", headers=tenant_a.headers()).json() == before
    assert sender.sent == []


def test_an_escaped_backslash_is_text(
    client: TestClient, tenant_a: TenantKeys, sender: RecordingSender
) -> None:
    response = client.post(
        "/v1/generations", json={"prompt": "print('\\u0000')"}, headers=tenant_a.headers()
    )
    assert response.status_code == 202, response.text
    assert len(sender.sent) == 1
