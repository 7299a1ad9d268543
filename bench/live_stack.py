"""The real parts a whole-path benchmark runs on: a temporary migrated PostgreSQL database,
Redis database 13 (the suite's servers: embedded unless `RCS_TEST_PG_ADMIN_URL`/`REDIS_URL` are
set) and Celery worker processes (one unless asked) serving a chosen model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from db.migrate import upgrade
from tests import servers
from tests.conftest import temporary_pg_database
from tests.worker_process import flush_broker, start_worker, stop_worker, worker_env

SECRET = "bench-secret-0123456789abcdef"


@dataclass(frozen=True)
class LiveStack:
    database_url: str
    broker_url: str
    env: dict[str, str]  # the worker's environment: reuse it for an API process


@contextmanager
def live_stack(model: Path, *, label: str, workers: int = 1) -> Iterator[LiveStack]:
    """`workers` worker processes, each with its own engine loop (how the service scales out)."""
    broker = servers.redis_url(13)
    flush_broker(broker)
    with (
        temporary_pg_database(servers.pg_admin_url(), label=label) as url,
        TemporaryDirectory() as tmp,
    ):
        upgrade(url)
        env = worker_env(
            database_url=url,
            broker_url=broker,
            data_dir=Path(tmp),
            secret=SECRET,
            RCS_LOG_FORMAT="text",
        )
        env["RCS_MODEL_DIR"] = str(model.resolve())
        started = [
            start_worker(env, Path(tmp) / f"worker{i}.log", name=f"{label}{i}", timeout=300)
            for i in range(workers)
        ]
        try:
            yield LiveStack(url, broker, env)
        finally:
            for worker in started:
                stop_worker(worker)
