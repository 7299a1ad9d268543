"""Start a real Celery worker process for tests and wait until it consumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from core.settings import PROJECT_ROOT

TINY_MODEL = PROJECT_ROOT / "var" / "models" / "tiny"


def tiny_model_banning(dest: Path, openers: tuple[str, ...]) -> Path:
    """A copy of the tiny model whose manifest bans `openers` at the start of a `[respond]`
    answer (the demo model's kind of manifest: the ban runs in the engine loop)."""
    shutil.copytree(TINY_MODEL, dest)
    manifest = dest / "refusal_tokens.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "respond_banned_openers": list(openers)}))
    return dest


def worker_env(
    *,
    database_url: str,
    broker_url: str,
    data_dir: Path,
    secret: str,
    needs_model: bool = True,
    **extra: str,
) -> dict[str, str]:
    if needs_model and not (TINY_MODEL / "config.json").exists():
        raise RuntimeError(f"the tiny model is missing at {TINY_MODEL}: run `make tiny-model`")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=broker_url,
        RCS_DATA_DIR=str(data_dir),
        RCS_SECRET_KEY=secret,
        RCS_ENVIRONMENT="test",
        RCS_MODEL_DIR=str(TINY_MODEL),
        **extra,
    )
    env.pop("BROKER_URL", None)
    return env


def flush_broker(broker_url: str) -> None:
    redis.Redis.from_url(broker_url).flushdb()


def start_worker(
    env: dict[str, str],
    log_path: Path,
    *,
    name: str = "w1",
    timeout: float = 120,
    queues: str = "generate,calibrate",
) -> subprocess.Popen[bytes]:
    """A worker as `rcs worker` runs it (consumer threads feeding one engine loop, from the
    Celery config); returns once it logged that it is ready."""
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"worker exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            )
        if " ready." in log_path.read_text(errors="replace"):
            return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"worker not ready after {timeout}s:\n{log_path.read_text()[-4000:]}")


def stop_worker(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
