"""The real parts a whole-path benchmark runs on: a temporary migrated PostgreSQL database,
Redis database 13 and one Celery worker process serving a chosen model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from db.migrate import upgrade
from tests.conftest import DEFAULT_PG_ADMIN_URL, temporary_pg_database
from tests.worker_process import flush_broker, start_worker, stop_worker, worker_env

BROKER = "redis://127.0.0.1:6379/13"
SECRET = "bench-secret-0123456789abcdef"


@dataclass(frozen=True)
class LiveStack:
    database_url: str
    env: dict[str, str]  # the worker's environment: reuse it for an API process


@contextmanager
def live_stack(model: Path, *, label: str) -> Iterator[LiveStack]:
    admin = os.environ.get("RCS_TEST_PG_ADMIN_URL", DEFAULT_PG_ADMIN_URL)
    flush_broker(BROKER)
    with temporary_pg_database(admin, label=label) as url, TemporaryDirectory() as tmp:
        upgrade(url)
        env = worker_env(
            database_url=url,
            broker_url=BROKER,
            data_dir=Path(tmp),
            secret=SECRET,
            RCS_LOG_FORMAT="text",
        )
        env["RCS_MODEL_DIR"] = str(model.resolve())
        worker = start_worker(env, Path(tmp) / "worker.log", name=label, timeout=300)
        try:
            yield LiveStack(url, env)
        finally:
            stop_worker(worker)
