"""Operations endpoints: liveness, readiness (database, broker, a worker) and Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from celery import Celery
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api.metrics import render_metrics
from core.queue import celery_config
from core.settings import Settings
from embedded.state import UP, read_state

router = APIRouter(tags=["ops"])
CHECK_TIMEOUT_SECONDS = 2.0
PING_TIMEOUT_SECONDS = 1.0


class NotReady(Exception):
    """A readiness check failed; the message says what the operator should look at."""


def _control_app(request: Request) -> Celery:
    """A Celery client for broker checks and pings, made once per app."""
    app = getattr(request.app.state, "ops_celery", None)
    if app is None:
        settings: Settings = request.app.state.settings
        app = Celery("rcs-ops")
        config = celery_config(settings)
        config["broker_connection_retry_on_startup"] = False
        config["broker_connection_timeout"] = CHECK_TIMEOUT_SECONDS
        app.conf.update(config)
        request.app.state.ops_celery = app
    return app


def check_database(request: Request) -> str:
    with request.app.state.session_factory() as session:
        if session.execute(text("SELECT 1")).scalar_one() != 1:
            raise NotReady("SELECT 1 returned something else")
    return "ok"


def check_broker(request: Request) -> str:
    with _control_app(request).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_SECONDS)
        conn.default_channel  # noqa: B018 - opening a channel proves the transport answers
    return "ok"


def check_workers(request: Request) -> str:
    """At least one worker answers a Celery ping."""
    replies = _control_app(request).control.ping(timeout=PING_TIMEOUT_SECONDS) or []
    if replies:
        return f"{len(replies)} answered"
    raise NotReady(f"no worker answered a ping within {PING_TIMEOUT_SECONDS} s")


def supervised_parts_down(settings: Settings) -> dict[str, dict[str, Any]]:
    """Under `rcs serve`: each supervised part that is not up, with its last exit code."""
    if settings.supervisor_state is None:
        return {}
    state = read_state(settings.supervisor_state)
    if state is None:
        return {"supervisor": {"ok": False, "detail": "the supervising rcs serve is gone"}}
    return {
        name: {
            "ok": False,
            "detail": f"{part.status} (last exit {part.last_exit}, restarts {part.restarts})",
        }
        for name, part in state.parts.items()
        if part.status != UP
    }


def run_checks(
    request: Request, checks: dict[str, Callable[[Request], str]]
) -> dict[str, dict[str, Any]]:
    """Run every check concurrently, each bounded by a timeout; never raises."""
    results: dict[str, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    futures = {name: pool.submit(check, request) for name, check in checks.items()}
    deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS + PING_TIMEOUT_SECONDS + 1
    for name, future in futures.items():
        try:
            detail = future.result(timeout=max(0.0, deadline - time.monotonic()))
            results[name] = {"ok": True, "detail": detail}
        except FutureTimeout:
            results[name] = {"ok": False, "detail": "timed out"}
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else ""
            results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {message}"[:300]}
    pool.shutdown(wait=False, cancel_futures=True)
    return results


READINESS_CHECKS: dict[str, Callable[[Request], str]] = {
    "database": check_database,
    "broker": check_broker,
    "workers": check_workers,
}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving requests."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"description": "Every part answers"},
        503: {"description": "A part does not answer; `failing` names it"},
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers SELECT 1, the broker accepts a connection, at least one
    worker answers a ping and, under `rcs serve`, every supervised part is up. 503 names every
    failing part."""
    results = await run_in_threadpool(run_checks, request, READINESS_CHECKS)
    results.update(supervised_parts_down(request.app.state.settings))
    failing = [name for name, r in results.items() if not r["ok"]]
    body: dict[str, Any] = {"status": "unavailable" if failing else "ready", "checks": results}
    if failing:
        body["failing"] = failing
    return JSONResponse(body, status_code=503 if failing else 200)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    data = await run_in_threadpool(render_metrics, state.settings, state.session_factory)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
