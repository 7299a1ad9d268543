"""Prometheus metrics of the API process: requests by route template and status, generations the
API saw finish by outcome and category, and the broker's queue depths (read at scrape time).

One registry per process (module level), so building several apps in one test process is fine.
Run one uvicorn worker per container (scale with replicas) so a scrape sees the whole process.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Scope

from core.categories import CATEGORIES
from core.queue import QUEUES
from core.settings import Settings
from db.models import Generation
from db.repositories.stats import leak_counts_by_category
from db.types import utcnow
from embedded.state import UP, read_state

REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "rcs_http_requests",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "rcs_http_request_duration_seconds",
    "HTTP request duration by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
    registry=REGISTRY,
)
API_GENERATIONS = Counter(
    "rcs_api_generations",
    "Generations a synchronous API call saw end, by outcome and refusal category "
    "('respond' when answered, 'none' when not succeeded).",
    ["outcome", "category"],
    registry=REGISTRY,
)
ROWS_PER_MESSAGE = Histogram(
    "rcs_generation_rows_per_message",
    "Generations per broker message sent by this API process (those committed while its "
    "previous message was in flight go together).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "rcs_queue_depth",
    "Messages waiting in each broker queue (Redis only; -1 when unreadable).",
    ["queue"],
    registry=REGISTRY,
)
SUPERVISED_UP = Gauge(
    "rcs_supervised_up",
    "Under `rcs serve`: 1 while a supervised part (postgres, redis, api, worker, beat) is up.",
    ["part"],
    registry=REGISTRY,
)
SUPERVISED_RESTARTS = Gauge(
    "rcs_supervised_restarts",
    "Under `rcs serve`: times the supervisor restarted a part since it started.",
    ["part"],
    registry=REGISTRY,
)

LEAK_WINDOW = timedelta(hours=1)
LEAK_CHECKS = Gauge(
    "rcs_leak_checks_last_hour",
    "Answered requests whose text was checked for a refusal in the last hour, all tenants, by "
    "the category they came nearest to refusing as (-1 when the database is unreadable).",
    ["category"],
    registry=REGISTRY,
)
LEAKS = Gauge(
    "rcs_leaks_last_hour",
    "Checked answers whose text reads as a refusal after [respond], last hour, by category.",
    ["category"],
    registry=REGISTRY,
)
LEAK_RATE = Gauge(
    "rcs_leak_rate_last_hour",
    "Leaks / checks over the last hour by category (NaN with no check).",
    ["category"],
    registry=REGISTRY,
)

access_log = logging.getLogger("rcs.access")


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/policies/{name}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def observe_request(scope: Scope, status: int, elapsed: float) -> None:
    """Count and time a finished request under its route template; log one access line."""
    route = route_template(scope)
    method = scope["method"]
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(elapsed)
    access_log.info(
        "%s %s %d",
        method,
        scope["path"],
        status,
        extra={"route": route, "status": status, "duration_ms": round(elapsed * 1e3, 2)},
    )


def observe_message(rows: int) -> None:
    ROWS_PER_MESSAGE.observe(rows)


def observe_generation(row: Generation) -> None:
    """Count a generation an API call waited for: its final status, or `timeout`."""
    if row.status in ("queued", "running"):
        API_GENERATIONS.labels("timeout", "none").inc()
        return
    category = "none"
    if row.status == "succeeded":
        category = row.refusal_category or "respond"
    API_GENERATIONS.labels(row.status, category).inc()


def _read_queue_depths(settings: Settings) -> None:
    url = settings.broker_url
    if url is None:
        return
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        with client.pipeline() as pipe:
            for queue in QUEUES:
                pipe.llen(queue)
            depths = pipe.execute()
        for queue, depth in zip(QUEUES, depths, strict=True):
            QUEUE_DEPTH.labels(queue).set(depth)
    except Exception:  # a scrape must not fail because the broker is down; /readyz says why
        for queue in QUEUES:
            QUEUE_DEPTH.labels(queue).set(-1)


def _read_supervised_parts(settings: Settings) -> None:
    state = read_state(settings.supervisor_state) if settings.supervisor_state else None
    for name, part in (state.parts if state else {}).items():
        SUPERVISED_UP.labels(name).set(1 if part.status == UP else 0)
        SUPERVISED_RESTARTS.labels(name).set(part.restarts)


def _read_leaks(session_factory: sessionmaker[Session] | None) -> None:
    counts: dict[str, tuple[int, int]] | None = None
    if session_factory is not None:
        try:
            with session_factory() as session:
                counts = leak_counts_by_category(session, since=utcnow() - LEAK_WINDOW)
        except Exception:  # a scrape must not fail because the database is down
            counts = None
    for category in CATEGORIES:
        checks, leaks = (-1, -1) if counts is None else counts.get(category, (0, 0))
        LEAK_CHECKS.labels(category).set(checks)
        LEAKS.labels(category).set(leaks)
        LEAK_RATE.labels(category).set(leaks / checks if checks > 0 else math.nan)


def render_metrics(
    settings: Settings, session_factory: sessionmaker[Session] | None = None
) -> bytes:
    """The exposition text of this process's registry, with fresh queue depths, the last hour's
    leak checks (read from the statistics) and, under `rcs serve`, the supervised parts' state."""
    _read_queue_depths(settings)
    _read_supervised_parts(settings)
    _read_leaks(session_factory)
    return generate_latest(REGISTRY)
