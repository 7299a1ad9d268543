"""Prometheus metrics of the API and the workers, and JSON log lines carrying the request id."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY as WORKER_REGISTRY

from api.app import create_app
from api.metrics import REGISTRY, observe_generation
from core.logs import JsonFormatter, request_id_var
from core.settings import Settings
from db.types import utcnow
from tests.api.conftest import TEST_SECRET, RecordingSender
from tests.ops.test_health import OPS_BROKER
from workers.metrics import observe_batch, observe_failure


def _sample(registry, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_requests_are_counted_by_route_template_and_status(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        broker_url=OPS_BROKER,
        secret_key=TEST_SECRET,
        environment="test",
        data_dir=tmp_path,
    )
    client = TestClient(create_app(settings, task_sender=RecordingSender()))
    labels = {"method": "GET", "route": "/v1/policies/{name}", "status": "401"}
    before = _sample(REGISTRY, "rcs_http_requests_total", **labels)
    for name in ("a", "b", "c"):
        assert client.get(f"/v1/policies/{name}").status_code == 401
    assert _sample(REGISTRY, "rcs_http_requests_total", **labels) == before + 3
    text = client.get("/metrics").text
    assert 'rcs_http_requests_total{method="GET",route="/v1/policies/{name}",status="401"}' in text
    assert 'rcs_queue_depth{queue="generate"}' in text
    assert "rcs_http_request_duration_seconds_bucket" in text
    # The database is unreachable: leak gauges say so instead of failing the scrape.
    assert 'rcs_leak_checks_last_hour{category="safety"} -1.0' in text


def test_api_counts_generations_by_outcome_and_category() -> None:
    labels = {"outcome": "succeeded", "category": "safety"}
    before = _sample(REGISTRY, "rcs_api_generations_total", **labels)
    observe_generation(SimpleNamespace(status="succeeded", refusal_category="safety"))  # type: ignore[arg-type]
    observe_generation(SimpleNamespace(status="queued", refusal_category=None))  # type: ignore[arg-type]
    assert _sample(REGISTRY, "rcs_api_generations_total", **labels) == before + 1
    assert _sample(REGISTRY, "rcs_api_generations_total", outcome="timeout", category="none") >= 1


def test_worker_observes_batch_size_latencies_and_outcomes(caplog) -> None:  # type: ignore[no-untyped-def]
    rows = [
        SimpleNamespace(
            id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            request_id=f"req-{i}",
            created_at=utcnow() - timedelta(seconds=1),
        )
        for i in range(3)
    ]
    results = [
        SimpleNamespace(category=c, first_token_ms=12.0, total_ms=80.0, completion_tokens=5)
        for c in ("safety", None, None)
    ]
    count_before = _sample(WORKER_REGISTRY, "rcs_worker_batch_size_count")
    respond_before = _sample(
        WORKER_REGISTRY, "rcs_worker_generations_total", outcome="succeeded", category="respond"
    )
    with caplog.at_level(logging.INFO, logger="rcs.worker"):
        observe_batch(rows, results)  # type: ignore[arg-type]
        observe_failure(rows[:1], "RuntimeError: boom")  # type: ignore[arg-type]
    assert _sample(WORKER_REGISTRY, "rcs_worker_batch_size_count") == count_before + 2
    assert (
        _sample(
            WORKER_REGISTRY, "rcs_worker_generations_total", outcome="succeeded", category="respond"
        )
        == respond_before + 2
    )
    assert _sample(WORKER_REGISTRY, "rcs_worker_first_token_seconds_count") >= 3
    assert _sample(WORKER_REGISTRY, "rcs_worker_end_to_end_seconds_sum") >= 3.0
    ids = [getattr(r, "request_id", None) for r in caplog.records]
    assert ids.count("req-0") == 2  # success, then the failure line
    assert {"req-1", "req-2"} <= set(ids)


def test_json_lines_carry_the_request_id_from_the_context_or_extra() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("rcs.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        token = request_id_var.set("ctx-id")
        logger.info("from the context", extra={"route": "/x"})
        request_id_var.reset(token)
        logger.info("from extra", extra={"request_id": "extra-id"})
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "ctx-id" and first["route"] == "/x" and first["level"] == "INFO"
    assert second["request_id"] == "extra-id" and second["msg"] == "from extra"


def test_access_log_line_carries_the_callers_request_id(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("rcs.access")
    access.addHandler(handler)
    try:
        settings = Settings(
            database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",  # never reached
            broker_url=OPS_BROKER,
            data_dir=tmp_path,
            log_format="text",
        )
        client = TestClient(create_app(settings, task_sender=RecordingSender()))
        response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    finally:
        access.removeHandler(handler)
    assert response.headers["X-Request-ID"] == "abc-123"
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["request_id"] == "abc-123"
    assert line["route"] == "/healthz" and line["status"] == 200
