"""`rcs serve`: the servers that are not configured (PostgreSQL, Redis), migrations, then the API,
a worker and beat, all supervised children; stopped in reverse order on SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType

from core.settings import Settings
from db.migrate import upgrade
from embedded import postgres, redis_server
from embedded.datadir import DataDirLock, check_usable
from embedded.errors import StartupError
from embedded.redelivery import restore_unacked
from embedded.state import RunState, read_state, state_path
from embedded.supervisor import ChildSpec, Supervisor
from workers.command_line import api_command, beat_command, worker_command

log = logging.getLogger("rcs.supervisor")
#: Children read these; anything the user set elsewhere for them would contradict the stack.
OVERRIDDEN = ("DATABASE_URL", "RCS_DATABASE_URL", "REDIS_URL", "BROKER_URL", "RCS_BROKER_URL")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    with_worker: bool = True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Interrupted(Exception):
    """SIGTERM or Ctrl-C arrived while the stack was starting."""


def serve(settings: Settings, options: ServeOptions) -> int:
    """Run the stack until a signal; 0 after an orderly stop, 2 when it cannot start."""
    # The CLI's root logger shows warnings only (quiet Alembic); the supervisor's starts, stops and
    # restarts are what an operator watches, so they always show.
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    data_dir = settings.data_dir.resolve()
    supervisor = Supervisor(RunState(supervisor_pid=os.getpid()), state_path(data_dir))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not supervisor.stopping:
            log.info("signal %d: stopping", signum)
        supervisor.stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    lock = DataDirLock(data_dir)
    try:
        check_usable(data_dir)
        lock.acquire()
    except StartupError as exc:
        print(f"rcs serve: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        _start(supervisor, settings, data_dir, options)
        supervisor.watch()
    except StartupError as exc:
        print(f"rcs serve: {exc}", file=sys.stderr, flush=True)
        return 2
    except Interrupted:
        pass
    finally:
        supervisor.stop_all()
        state_path(data_dir).unlink(missing_ok=True)
        lock.release()
    return 0


def _start(
    supervisor: Supervisor, settings: Settings, data_dir: Path, options: ServeOptions
) -> None:
    state = supervisor.state
    log_dir = data_dir / "logs"
    state.database_url = settings.database_url or _start_postgres(supervisor, data_dir, log_dir)
    state.broker_url = settings.broker_url or _start_redis(supervisor, data_dir, log_dir)
    _check(supervisor)
    upgrade(state.database_url)
    env = child_env(settings, state, data_dir)
    api_url = f"http://{'127.0.0.1' if options.host in ('0.0.0.0', '::') else options.host}:{options.port}"
    state.api_url = api_url
    supervisor.start(
        ChildSpec(
            name="api",
            argv=api_command(options.host, options.port),
            env=env,
            ready=lambda: _healthy(api_url),
        )
    )
    _check(supervisor)
    if options.with_worker:
        broker_url = state.broker_url
        supervisor.start(
            ChildSpec(
                name="worker",
                argv=worker_command(settings),
                env=env,
                stop_timeout=60.0,
                on_exit=partial(restore_unacked, broker_url),
            ),
            wait=False,
        )
        supervisor.start(ChildSpec(name="beat", argv=beat_command(settings), env=env), wait=False)
    print(
        f"Refusal Control Service on {api_url}  (health: {api_url}/healthz, docs: {api_url}/docs)",
        flush=True,
    )
    print(
        f"data: {data_dir}  database: {state.database_url}  broker: {state.broker_url}", flush=True
    )
    print("get a key:  .venv/bin/rcs tenant create <name>", flush=True)


def _check(supervisor: Supervisor) -> None:
    if supervisor.stopping:
        raise Interrupted


def _start_postgres(supervisor: Supervisor, data_dir: Path, log_dir: Path) -> str:
    port = free_port()
    supervisor.start(postgres.child(data_dir, port, log_dir))
    postgres.ensure_database(port)
    return postgres.url(port)


def _start_redis(supervisor: Supervisor, data_dir: Path, log_dir: Path) -> str:
    port = free_port()
    url = redis_server.url(port)
    # A worker cut off from Redis cannot acknowledge what it held; the only worker is ours, so
    # requeue at once (a task run twice is written once) rather than after the visibility timeout.
    requeue = partial(restore_unacked, url)
    supervisor.start(redis_server.child(data_dir, port, log_dir, on_restarted=requeue))
    return url


def child_env(settings: Settings, state: RunState, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDDEN}
    assert state.database_url is not None and state.broker_url is not None
    env.update(
        DATABASE_URL=state.database_url,
        REDIS_URL=state.broker_url,
        RCS_DATA_DIR=str(data_dir),
        RCS_SECRET_KEY=settings.secret_key,
        RCS_SUPERVISOR_STATE=str(state_path(data_dir)),
    )
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def database_for_command(settings: Settings) -> Iterator[str]:
    """The database a CLI command should use: the configured one, the running stack's, or a
    PostgreSQL started for this command alone (and stopped after it)."""
    if settings.database_url:
        yield settings.database_url
        return
    data_dir = settings.data_dir.resolve()
    running = read_state(state_path(data_dir))
    if running is not None and running.database_url:
        yield running.database_url
        return
    check_usable(data_dir)
    supervisor = Supervisor(
        RunState(supervisor_pid=os.getpid()), data_dir / "run" / "cli-state.json"
    )
    with DataDirLock(data_dir):
        try:
            url = _start_postgres(supervisor, data_dir, data_dir / "logs")
            upgrade(url)
            yield url
        finally:
            supervisor.stop_all()
