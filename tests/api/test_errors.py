"""Issue 13's inputs: none is a 5xx, every 4xx is the documented body naming the field, and a
calibration prompt is validated at submission exactly as a generation's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.settings import Settings
from db.models import CalibrationRun
from db.session import create_session_factory
from tests.api.conftest import TenantKeys

NESTED = "[" * 100_000 + "]" * 100_000
TARGETS = {"policy": "default", "targets": '{"safety": 0.5}'}


def _jsonl(data: bytes) -> dict[str, Any]:
    return {"data": TARGETS, "files": {"file": ("p.jsonl", data)}}


def _json(text: str | bytes) -> dict[str, Any]:
    return {"content": text, "headers": {"Content-Type": "application/json"}}


# (case, method, path, request kwargs, status, error type, field)
CASES: list[tuple[str, str, str, dict[str, Any], int, str, str | None]] = [
    (
        "40,000-character chat message",
        "POST",
        "/v1/chat/completions",
        {"json": {"model": "tiny", "messages": [{"role": "user", "content": "x" * 40_000}]}},
        422,
        "validation_error",
        "messages.0.content",
    ),
    (
        "chat message parts that join to over 32,000 characters",
        "POST",
        "/v1/chat/completions",
        {
            "json": {
                "model": "tiny",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "x" * 20_000}] * 2}
                ],
            }
        },
        422,
        "validation_error",
        "messages.0.content",
    ),
    (
        "calibration prompts nested 100,000 deep",
        "POST",
        "/v1/calibrations",
        _json('{"policy": "default", "targets": {"safety": 0.5}, "prompts": ' + NESTED + "}"),
        400,
        "invalid_json",
        "body",
    ),
    (
        "generation body nested 100,000 deep",
        "POST",
        "/v1/generations",
        _json('{"prompt": ' + NESTED + "}"),
        400,
        "invalid_body",
        "body",
    ),
    (
        "invalid UTF-8 body",
        "POST",
        "/v1/generations",
        _json(b'{"prompt": "\xff\xfe"}'),
        400,
        "invalid_body",
        "body",
    ),
    (
        "JSONL upload starting with \\xff\\xfe",
        "POST",
        "/v1/calibrations",
        _jsonl(b'\xff\xfe{"prompt": "hi"}\n'),
        422,
        "validation_error",
        "file:1",
    ),
    (
        "JSONL upload with a NUL in a prompt",
        "POST",
        "/v1/calibrations",
        _jsonl(b'{"prompt": "fine"}\n{"prompt": "a\\u0000b"}\n'),
        422,
        "validation_error",
        "file:2",
    ),
    (
        "calibration prompt messages without a role",
        "POST",
        "/v1/calibrations",
        _jsonl(b'{"prompt": "fine"}\n{"prompt": [{"foo": "bar"}]}\n'),
        422,
        "validation_error",
        "file:2",
    ),
    (
        "inline calibration prompt with an unknown role",
        "POST",
        "/v1/calibrations",
        {
            "json": {
                "policy": "default",
                "targets": {"safety": 0.5},
                "prompts": [{"prompt": [{"role": "tool", "content": "x"}]}],
            }
        },
        422,
        "validation_error",
        "prompts.0.prompt.messages.0.role",
    ),
    (
        "inline calibration prompt over 32,000 characters",
        "POST",
        "/v1/calibrations",
        {
            "json": {
                "policy": "default",
                "targets": {"safety": 0.5},
                "prompts": [{"prompt": "x" * 32_001}],
            }
        },
        422,
        "validation_error",
        "prompts.0.prompt.text",
    ),
    (
        "two uploaded files",
        "POST",
        "/v1/calibrations",
        {
            "data": TARGETS,
            "files": [
                ("file", ("a.jsonl", b'{"prompt": "hi"}\n')),
                ("file", ("b.jsonl", b'{"prompt": "hi"}\n')),
            ],
        },
        422,
        "validation_error",
        "file",
    ),
    (
        "calibration as text/plain",
        "POST",
        "/v1/calibrations",
        {"content": "{}", "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "calibration naming an unknown policy",
        "POST",
        "/v1/calibrations",
        {"json": {"policy": "nope", "targets": {"safety": 0.5}, "prompts": [{"prompt": "hi"}]}},
        404,
        "not_found",
        "policy",
    ),
    (
        "stats ending in year 1",
        "GET",
        "/v1/stats?end=0001-01-01T00:00:00Z",
        {},
        422,
        "validation_error",
        "end",
    ),
    (
        "stats from year 1 to its second day",
        "GET",
        "/v1/stats?start=0001-01-01T00:00:00Z&end=0001-01-02T00:00:00Z&bucket=86400",
        {},
        200,
        "",
        None,
    ),
    (
        "stats ending after year 9999 in UTC",
        "GET",
        "/v1/stats?end=9999-12-31T23:59:59-23:59",
        {},
        422,
        "validation_error",
        "end",
    ),
    (
        "stats over the last day of year 9999",
        "GET",
        "/v1/stats?start=9999-12-30T00:00:00Z&end=9999-12-31T23:59:59.999999Z&bucket=86400",
        {},
        200,
        "",
        None,
    ),
    (
        "stats end given as a number",
        "GET",
        "/v1/stats?end=0.5",
        {},
        422,
        "validation_error",
        "end",
    ),
    (
        "stats end without a time zone",
        "GET",
        "/v1/stats?end=2025-01-01T00:00:00",
        {},
        422,
        "validation_error",
        "end",
    ),
    ("unknown route", "GET", "/v1/nothing", {}, 404, "not_found", None),
    ("wrong method", "DELETE", "/v1/generations", {}, 405, "method_not_allowed", None),
    (
        "generation as text/plain",
        "POST",
        "/v1/generations",
        {"content": '{"prompt": "hi"}', "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "both prompt and messages",
        "POST",
        "/v1/generations",
        {"json": {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}},
        422,
        "validation_error",
        "messages",
    ),
    (
        "prompt with a NUL (PostgreSQL text cannot hold one)",
        "POST",
        "/v1/generations",
        {"json": {"prompt": "a\x00b"}},
        422,
        "validation_error",
        "prompt",
    ),
    (
        "chat message with a NUL",
        "POST",
        "/v1/chat/completions",
        {"json": {"model": "tiny", "messages": [{"role": "user", "content": "hi\x00"}]}},
        422,
        "validation_error",
        "messages.0.content",
    ),
    (
        "policy refusal message with a NUL",
        "POST",
        "/v1/policies",
        {
            "json": {
                "name": "nul",
                "mode": "threshold",
                "categories": {"safety": {"threshold": 0.5, "refusal_message": "no\x00"}},
            }
        },
        422,
        "validation_error",
        "categories.safety.refusal_message",
    ),
    (
        "key name with a NUL",
        "POST",
        "/v1/keys",
        {"json": {"name": "a\x00b"}},
        422,
        "validation_error",
        "name",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "type_", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_a_documented_4xx_naming_the_field_and_edges_work(
    client: TestClient,
    tenant_a: TenantKeys,
    api_settings: Settings,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    type_: str,
    field: str | None,
) -> None:
    headers = {**tenant_a.headers(), **kwargs.pop("headers", {})}
    response = client.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    if status == 200:
        return
    error = response.json()["error"]
    assert set(error) >= {"type", "message"} and error["message"]
    assert (error["type"], error.get("field")) == (type_, field), error
    with create_session_factory(api_settings.sqlalchemy_url)() as session:
        runs = session.scalar(
            select(func.count())
            .select_from(CalibrationRun)
            .where(CalibrationRun.tenant_id == tenant_a.tenant_id)
        )
    assert runs == 0  # nothing was accepted to fail later in a worker


def test_a_wrong_method_names_the_allowed_ones(client: TestClient) -> None:
    response = client.delete("/v1/policies")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_a_body_over_the_upload_limit_is_413(
    api_settings: Settings, tenant_a: TenantKeys, sender: Any
) -> None:
    from api.app import create_app

    small = api_settings.model_copy(update={"max_upload_bytes": 4096})
    with TestClient(create_app(small, task_sender=sender)) as client:
        response = client.post(
            "/v1/generations",
            content=json.dumps({"prompt": "x" * 5000}),
            headers={**tenant_a.headers(), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["error"] == {
        "type": "too_large",
        "message": "the body is larger than 4096 bytes",
        "field": "body",
    }


def test_a_chunked_json_body_over_the_limit_is_413(
    api_settings: Settings, tenant_a: TenantKeys, sender: Any
) -> None:
    from api.app import create_app

    small = api_settings.model_copy(update={"max_upload_bytes": 4096})
    chunks = iter([b'{"prompt": "', b"x" * 3000, b"x" * 3000, b'"}'])  # no Content-Length
    with TestClient(create_app(small, task_sender=sender)) as client:
        response = client.post(
            "/v1/generations",
            content=chunks,
            headers={**tenant_a.headers(), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "too_large"
    assert sender.sent == []


def test_an_unexpected_failure_is_a_documented_500(
    api_settings: Settings, tenant_a: TenantKeys, sender: Any
) -> None:
    """Not an input: a bug. Still the error body, and the traceback goes to the log."""
    from api.app import create_app

    app = create_app(api_settings, task_sender=sender)

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"type": "internal_error", "message": "internal error; see the logs"}
    }
