"""Calibration submissions over HTTP: inline and JSONL uploads, and bad input that writes nothing."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from core.settings import Settings
from db.models import CalibrationItem, CalibrationRun
from db.session import create_session_factory
from tests.api.conftest import TenantKeys, set_policy

PROMPTS = [
    {"prompt": f"question {i}", "label": "safety" if i % 2 else "respond"} for i in range(20)
]


def _policy(client: TestClient, keys: TenantKeys, name: str = "default") -> None:
    set_policy(client, keys, name, {"mode": "threshold"})


def _counts(settings: Settings) -> tuple[int, int]:
    with create_session_factory(settings.sqlalchemy_url)() as session:
        runs = session.scalar(select(func.count()).select_from(CalibrationRun))
        items = session.scalar(select(func.count()).select_from(CalibrationItem))
    return int(runs or 0), int(items or 0)


def test_inline_submission_splits_holdout_and_sends_the_task_after_commit(
    client: TestClient, tenant_a: TenantKeys, sender, api_settings: Settings
) -> None:
    _policy(client, tenant_a)
    body = {
        "policy": "default",
        "targets": {"safety": 0.4},
        "prompts": PROMPTS,
        "holdout_fraction": 0.25,
    }
    response = client.post("/v1/calibrations", json=body, headers=tenant_a.headers())
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "queued" and run["progress"] == {"done": 0, "total": 20}
    assert run["method"] == "threshold"  # from the policy's mode
    assert response.headers["Location"] == f"/v1/calibrations/{run['id']}"
    assert sender.sent == [("rcs.calibrate", [run["id"]])]
    with create_session_factory(api_settings.sqlalchemy_url)() as session:
        splits = session.execute(
            select(CalibrationItem.split, func.count())
            .where(CalibrationItem.run_id == run["id"])
            .group_by(CalibrationItem.split)
        ).all()
    assert dict(splits) == {"calibration": 15, "holdout": 5}


def test_jsonl_upload(client: TestClient, tenant_a: TenantKeys, sender) -> None:
    _policy(client, tenant_a)
    upload = "\n".join(json.dumps(p) for p in PROMPTS).encode()
    response = client.post(
        "/v1/calibrations",
        data={
            "policy": "default",
            "targets": json.dumps({"safety": 0.5}),
            "target_kind": "labelled",
        },
        files={"file": ("prompts.jsonl", upload, "application/jsonl")},
        headers=tenant_a.headers(),
    )
    assert response.status_code == 202, response.text
    assert response.json()["progress"]["total"] == 20
    assert response.json()["target_kind"] == "labelled"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"targets": {"safety": 1.5}}, 422, "targets"),
        ({"targets": {"safety": -0.1}}, 422, "targets"),
        ({"targets": {"violence": 0.5}}, 422, "targets"),
        ({"targets": {}}, 422, "targets"),
        ({"prompts": []}, 422, "prompts"),
        ({"prompts": [{"prompt": "x", "label": "rude"}]}, 422, "prompts.0.label"),
        ({"method": "magic"}, 422, "method"),
        ({"holdout_fraction": 1.0}, 422, "holdout_fraction"),
        (
            {"target_kind": "labelled", "prompts": [{"prompt": "unlabelled"}] * 4},
            422,
            "prompts.0.label",
        ),
        (
            {"target_kind": "labelled", "prompts": [{"prompt": "x", "label": "respond"}] * 4},
            422,
            "targets.safety",
        ),
        ({"policy": "nope"}, 404, None),
    ],
)
def test_bad_inline_submissions_are_4xx_and_write_nothing(
    client: TestClient,
    tenant_a: TenantKeys,
    sender,
    api_settings: Settings,
    body: dict,
    status: int,
    field: str | None,
) -> None:
    _policy(client, tenant_a)
    before = _counts(api_settings)
    payload = {"policy": "default", "targets": {"safety": 0.5}, "prompts": PROMPTS, **body}
    response = client.post("/v1/calibrations", json=payload, headers=tenant_a.headers())
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["error"]["field"].startswith(field)
    assert _counts(api_settings) == before
    assert sender.sent == []


@pytest.mark.parametrize(
    ("upload", "field", "message"),
    [
        (b"", "file", "empty"),
        (b'{"prompt": "ok"}\n{"prompt": "ok"\n', "file:2", "line 2"),
        (b'{"prompt": "ok"}\n\n{"prompt": 5}\n', "file:3", "line 3"),
        (b'{"prompt": "ok", "label": "spam"}\n', "file:1", "line 1"),
    ],
)
def test_malformed_uploads_name_the_line_and_write_nothing(
    client: TestClient,
    tenant_a: TenantKeys,
    api_settings: Settings,
    upload: bytes,
    field: str,
    message: str,
) -> None:
    _policy(client, tenant_a)
    before = _counts(api_settings)
    response = client.post(
        "/v1/calibrations",
        data={"policy": "default", "targets": json.dumps({"safety": 0.5})},
        files={"file": ("prompts.jsonl", upload, "application/jsonl")},
        headers=tenant_a.headers(),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert message in response.json()["error"]["message"]
    assert _counts(api_settings) == before


def test_upload_over_the_limit_is_413(
    client: TestClient, tenant_a: TenantKeys, api_settings: Settings, sender
) -> None:
    _policy(client, tenant_a)
    before = _counts(api_settings)
    small = api_settings.model_copy(update={"max_upload_bytes": 4096})
    line = json.dumps({"prompt": "x" * 100}).encode() + b"\n"
    with TestClient(create_app(small, task_sender=sender)) as limited:
        response = limited.post(
            "/v1/calibrations",
            data={"policy": "default", "targets": json.dumps({"safety": 0.5})},
            files={"file": ("prompts.jsonl", line * 60, "application/jsonl")},
            headers=tenant_a.headers(),
        )
        assert response.status_code == 413, response.text
        inline = {
            "policy": "default",
            "targets": {"safety": 0.5},
            "prompts": [{"prompt": "x" * 100}] * 60,
        }
        assert (
            limited.post("/v1/calibrations", json=inline, headers=tenant_a.headers()).status_code
            == 413
        )
    assert _counts(api_settings) == before


def test_another_tenants_policy_is_404(
    client: TestClient, tenant_a: TenantKeys, tenant_b: TenantKeys
) -> None:
    _policy(client, tenant_b, "b-only")
    body = {"policy": "b-only", "targets": {"safety": 0.5}, "prompts": PROMPTS}
    assert client.post("/v1/calibrations", json=body, headers=tenant_a.headers()).status_code == 404


def test_resolve_and_apply_need_a_finished_run(client: TestClient, tenant_a: TenantKeys) -> None:
    _policy(client, tenant_a)
    body = {"policy": "default", "targets": {"safety": 0.5}, "prompts": PROMPTS}
    location = client.post("/v1/calibrations", json=body, headers=tenant_a.headers()).headers[
        "Location"
    ]
    solve = client.post(
        f"{location}/solve", json={"targets": {"safety": 0.2}}, headers=tenant_a.headers()
    )
    assert solve.status_code == 409
    assert client.post(f"{location}/apply", headers=tenant_a.headers()).status_code == 409
    bad = client.post(
        f"{location}/solve", json={"targets": {"safety": 2}}, headers=tenant_a.headers()
    )
    assert bad.status_code == 422
    cancelled = client.post(f"{location}/cancel", headers=tenant_a.headers())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
