"""Worker metrics and structured logs.

Each worker process (one per GPU: consumer threads feeding one engine loop) serves its own Prometheus endpoint with
`prometheus_client.start_http_server` on `RCS_WORKER_METRICS_PORT` (unset: not exposed), and logs
one JSON line per generation with the request id the API stored on the row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery.signals import setup_logging, worker_init
from prometheus_client import Counter, Histogram, start_http_server

from core.leaks import LeakCheck
from core.logs import configure_json_logging
from core.settings import get_settings
from db.models import Generation
from db.types import utcnow

log = logging.getLogger("rcs.worker")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

BATCH_SIZE = Histogram(
    "rcs_worker_batch_size",
    "Rows decoding together in the engine loop when a row finishes.",
    buckets=(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256),
)
FIRST_TOKEN_SECONDS = Histogram(
    "rcs_worker_first_token_seconds",
    "Engine time from a row's admission to its first token (prefill and the refusal decision).",
    buckets=LATENCY_BUCKETS,
)
TOTAL_SECONDS = Histogram(
    "rcs_worker_generation_seconds",
    "Engine time from a row's admission to its last token.",
    buckets=LATENCY_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "rcs_worker_end_to_end_seconds",
    "From the API writing the row (queued) to the worker recording its result.",
    buckets=LATENCY_BUCKETS,
)
LEAK_CHECKS = Counter(
    "rcs_worker_leak_checks",
    "Answered generations whose text was checked for a refusal (leak monitoring), by the "
    "category they came nearest to refusing as.",
    ["category"],
)
LEAKS = Counter(
    "rcs_worker_leaks",
    "Checked answers whose text reads as a refusal after the [respond] token, by category.",
    ["category"],
)
GENERATIONS = Counter(
    "rcs_worker_generations",
    "Generations finished by a worker, by outcome and refusal category ('respond' when "
    "answered, 'none' when failed).",
    ["outcome", "category"],
)


def observe_batch(
    rows: Sequence[Generation], results: Sequence[Any], *, batch_rows: int | None = None
) -> None:
    """Record written rows: the batch they ran in, latencies and outcome, one log line per row."""
    batch_rows = len(rows) if batch_rows is None else batch_rows
    BATCH_SIZE.observe(batch_rows)
    now = utcnow()
    for row, result in zip(rows, results, strict=True):
        category = result.category or "respond"
        FIRST_TOKEN_SECONDS.observe(result.first_token_ms / 1000)
        TOTAL_SECONDS.observe(result.total_ms / 1000)
        end_to_end = (now - row.created_at).total_seconds() if row.created_at else None
        if end_to_end is not None:
            END_TO_END_SECONDS.observe(max(end_to_end, 0.0))
        GENERATIONS.labels("succeeded", category).inc()
        log.info(
            "generation succeeded",
            extra={
                "request_id": row.request_id,
                "generation_id": str(row.id),
                "tenant_id": str(row.tenant_id),
                "category": category,
                "batch_size": batch_rows,
                "first_token_ms": round(result.first_token_ms, 2),
                "total_ms": round(result.total_ms, 2),
                "completion_tokens": result.completion_tokens,
            },
        )


def observe_leaks(checks: Sequence[LeakCheck | None]) -> None:
    """Count the leak checks of written rows (None: the row was not checked)."""
    for check in checks:
        if check is not None:
            LEAK_CHECKS.labels(check.category).inc()
            if check.leak:
                LEAKS.labels(check.category).inc()


def observe_failure(rows: Sequence[Generation], error: str) -> None:
    """Record a batch the engine failed on; each row's request id is logged with the error."""
    BATCH_SIZE.observe(len(rows))
    for row in rows:
        GENERATIONS.labels("failed", "none").inc()
        log.error(
            "generation failed",
            extra={"request_id": row.request_id, "generation_id": str(row.id), "error": error},
        )


@setup_logging.connect
def _json_logs(**_: Any) -> None:
    """Replace Celery's log setup with JSON lines (plain text with RCS_LOG_FORMAT=text)."""
    if get_settings().log_format == "json":
        configure_json_logging()
    else:
        logging.basicConfig(level=logging.INFO)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    port = get_settings().worker_metrics_port
    if port is not None:
        start_http_server(port, addr="0.0.0.0")
        log.info("worker metrics on :%d/metrics", port)
