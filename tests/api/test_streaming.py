"""Real token streaming on the live stack: a real worker, Redis, PostgreSQL and uvicorn (real
HTTP), read with the `openai` SDK and with plain server-sent events."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from core.categories import CATEGORIES
from tests.api.conftest import TenantKeys
from tests.api.live import ONLY_SAFETY_ALWAYS, create_policy

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "Write a short poem about the sea and the sky."}]
ANSWER_ALWAYS = {"mode": "bias", "categories": {c: {"bias": "off"} for c in CATEGORIES}}
HOTLINE = "I can't help with that. If someone is in danger, call your local emergency number."
SAFETY_WITH_MESSAGE = {
    "mode": "threshold",
    "categories": {
        c: {"threshold": 0.0, "refusal_message": HOTLINE} if c == "safety" else {"enabled": False}
        for c in CATEGORIES
    },
}


def _sdk(base: str, keys: TenantKeys):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=f"{base}/v1", api_key=keys.client, max_retries=0, timeout=120)


def _served_model(base: str, keys: TenantKeys) -> str:
    return _sdk(base, keys).models.list().data[0].id


def test_openai_sdk_streams_tokens_with_the_decision_first(
    live_client: TestClient, live_server: str, running_worker: Path, tenant_a: TenantKeys
) -> None:
    create_policy(live_client, tenant_a, "answers", ANSWER_ALWAYS)
    create_policy(live_client, tenant_a, "refuses", ONLY_SAFETY_ALWAYS)
    create_policy(live_client, tenant_a, "hotline", SAFETY_WITH_MESSAGE)
    sdk, model = _sdk(live_server, tenant_a), _served_model(live_server, tenant_a)

    def ask(policy: str, **kwargs):  # type: ignore[no-untyped-def]
        return sdk.chat.completions.create(
            model=model,
            messages=QUESTION,
            max_tokens=32,
            temperature=0,
            extra_body={"policy": policy},
            **kwargs,
        )

    whole = ask("answers")
    chunks = list(ask("answers", stream=True, stream_options={"include_usage": True}))
    decision = chunks[0].model_extra["refusal_control"]
    assert decision["refused"] is False and decision["category"] is None
    assert set(decision["probabilities"]) == set(CATEGORIES)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(pieces) > 1, "tokens arrive as several chunks, not one finished text"
    assert "".join(pieces) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    refused = list(ask("refuses", stream=True))
    assert refused[0].model_extra["refusal_control"]["category"] == "safety"
    assert all(c.choices[0].delta.content in (None, "") for c in refused)
    text = "".join(c.choices[0].delta.refusal or "" for c in refused)
    assert text == ask("refuses").choices[0].message.refusal

    hotline = list(ask("hotline", stream=True))
    assert "".join(c.choices[0].delta.refusal or "" for c in hotline) == HOTLINE
    recorded = ask("hotline")
    assert recorded.choices[0].message.refusal == HOTLINE
    assert recorded.usage.completion_tokens == 1  # left the batch after the control token


def _sse(lines: list[str]) -> list[tuple[str, dict]]:
    events, name = [], "message"
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
            name = "message"
    return events


def test_native_stream_and_a_client_that_leaves_early(
    live_client: TestClient, live_server: str, running_worker: Path, tenant_b: TenantKeys
) -> None:
    create_policy(live_client, tenant_b, "default", ANSWER_ALWAYS)
    body = {"messages": QUESTION, "max_tokens": 48, "stream": True}
    headers = tenant_b.headers("client")
    with httpx.Client(base_url=live_server, timeout=120) as http:
        with http.stream("POST", "/v1/generations", json=body, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _sse(list(response.iter_lines()))
        names = [n for n, _ in events]
        assert names[0] == "decision" and names[-1] == "done" and "text" in names
        done = events[-1][1]
        assert done["status"] == "succeeded"
        assert "".join(e["text"] for n, e in events if n == "text") == done["output"]

        # Leave after the decision: the row still finishes and is recorded.
        with http.stream("POST", "/v1/generations", json=body, headers=headers) as response:
            location = response.headers["Location"]
            first = next(response.iter_lines())
            assert first == "event: decision"
        deadline = time.monotonic() + 60
        while (row := http.get(location, headers=headers).json())["status"] != "succeeded":
            assert time.monotonic() < deadline, row
            time.sleep(0.1)
        assert row["output"] and row["completion_tokens"] >= 1


def test_a_stream_whose_prompt_does_not_fit_is_a_plain_422(
    live_client: TestClient, running_worker: Path, tenant_b: TenantKeys
) -> None:
    """Failing before its first token, a stream is a plain HTTP error; this one is the input's
    fault (prompt plus budget over the model's context), so a 4xx, never a 5xx."""
    create_policy(live_client, tenant_b, "plain", ANSWER_ALWAYS)
    response = live_client.post(
        "/v1/generations",
        json={"prompt": "tell me about the moon " * 400, "max_tokens": 8, "stream": True},
        headers=tenant_b.headers("client"),
    )
    assert response.status_code == 422, response.text
    assert "exceeds the model's context" in response.json()["error"]["message"]
