"""The PostgreSQL and Redis the suite runs on: the ones named by `RCS_TEST_PG_ADMIN_URL` and
`REDIS_URL` when set, else the embedded servers of `rcs serve` (from the same wheels), started
once per test process on free loopback ports and stopped at its end."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from embedded import postgres, redis_server
from embedded.stack import free_port
from embedded.state import RunState
from embedded.supervisor import Supervisor

_started: list[tuple[Supervisor, Path]] = []


@cache
def _embedded() -> Supervisor:
    # Under root PostgreSQL runs as its own user, which must be able to reach its folder.
    root = Path(tempfile.mkdtemp(prefix="rcs-test-servers-"))
    root.chmod(0o755)
    supervisor = Supervisor(RunState(supervisor_pid=os.getpid()), root / "state.json")
    _started.append((supervisor, root))
    atexit.register(stop)  # if pytest_unconfigure never ran (an interrupted session)
    return supervisor


def stop() -> None:
    """Stop the embedded servers (at the end of the test session); harmless when none run."""
    while _started:
        supervisor, root = _started.pop()
        supervisor.stop_all()
        shutil.rmtree(root, ignore_errors=True)


@cache
def pg_admin_url() -> str:
    configured = os.environ.get("RCS_TEST_PG_ADMIN_URL")
    if configured:
        return configured
    supervisor = _embedded()
    port = free_port()
    supervisor.start(
        postgres.child(supervisor.state_file.parent, port, supervisor.state_file.parent)
    )
    return postgres.url(port, database="postgres")


@cache
def _redis_base() -> str:
    configured = os.environ.get("REDIS_URL")
    if configured:
        return configured.rsplit("/", 1)[0] if configured.count("/") > 2 else configured
    supervisor = _embedded()
    port = free_port()
    supervisor.start(
        redis_server.child(supervisor.state_file.parent, port, supervisor.state_file.parent)
    )
    return f"redis://127.0.0.1:{port}"


def redis_url(db: int) -> str:
    """Redis database `db` (0-15) of the suite's server; each test family keeps its own."""
    return f"{_redis_base()}/{db}"
