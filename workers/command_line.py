"""The API, worker and beat command lines, shared by `rcs worker`/`rcs beat`, the supervisor of
`rcs serve` and the tests that start real processes."""

from __future__ import annotations

import sys

from core.settings import Settings


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", *args]


def worker_command(
    settings: Settings, *, queues: str = "generate,calibrate,maintenance"
) -> list[str]:
    """The worker command line: one process per model / GPU. Its pool comes from the Celery
    config (`core.queue`): consumer threads, one per request held, feeding one engine loop."""
    return celery_command("worker", "-Q", queues, "--loglevel", "INFO")


def beat_command(settings: Settings) -> list[str]:
    schedule = settings.data_dir / "celerybeat-schedule"
    return celery_command("beat", "--schedule", str(schedule), "--loglevel", "INFO")


def api_command(host: str, port: int) -> list[str]:
    """uvicorn serving the API factory; it drains open requests for up to 10 s on SIGTERM.
    uvloop and httptools (installed with the project) are the faster event loop and parser;
    uvicorn's own access line is off because the API logs one per request (`rcs.access`)."""
    serve = ["--host", host, "--port", str(port), "--timeout-graceful-shutdown", "10"]
    serve += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    return [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", *serve]
