"""Service settings, read once from the environment (pydantic-settings).

With no `DATABASE_URL` and no Redis URL, `rcs serve` runs the embedded default: it starts
PostgreSQL and Redis itself (see `embedded/`) and hands their URLs to its children. The secret
of keys and dashboard sessions is `RCS_SECRET_KEY`, else (local mode only) a random one made
once and kept in `RCS_DATA_DIR/secret_key`; outside local mode an unsafe secret is refused at
start, not merely warned about.
"""

from __future__ import annotations

import errno
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

UNSAFE_SECRETS = frozenset({"", "changeme", "change-me", "secret", "local-dev-secret"})
PROJECT_ROOT = Path(__file__).resolve().parent.parent


SECRET_FILE = "secret_key"


class UnsafeSettings(ValueError):
    """Settings that must not be used outside local development."""


class NotConfigured(RuntimeError):
    """A server URL is needed and none is configured (outside `rcs serve`'s embedded stack)."""


def _required_url(url: str | None, variable: str, server: str) -> str:
    """`url`, or `NotConfigured` naming the variable to set and the embedded server instead."""
    if not url:
        raise NotConfigured(
            f"{variable} is not set: start `rcs serve` (embedded {server}) or set it"
        )
    return url


def unwritable_reason(exc: OSError) -> str:
    """Why a folder cannot be written, in the words an operator searches for."""
    if exc.errno == errno.EROFS:
        return "read-only"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return exc.strerror or str(exc)


def load_or_create_secret(data_dir: Path) -> str:
    """The data dir's secret, made once with 256 random bits and readable by its owner only."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    # O_EXCL: of two processes racing to create it, one writes and both read the winner's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RCS_", extra="ignore", populate_by_name=True)

    environment: Literal["local", "test", "production"] = "local"
    data_dir: Path = PROJECT_ROOT / "var"
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "RCS_DATABASE_URL")
    )
    broker_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BROKER_URL", "REDIS_URL", "RCS_BROKER_URL"),
    )
    #: Empty: in local mode, the data dir's own random secret (`load_or_create_secret`).
    secret_key: str = Field(default="")
    model_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    #: Continuous batching bounds: rows decoding together, and the cache tokens (prompt plus
    #: budget per row) they may reserve.
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    max_batch_tokens: int = Field(default=32_768, ge=64)
    #: A running batch of B rows admits once max(1, fraction x B) requests wait, or the first
    #: has waited `admission_wait_ms` (`workers/engine/loop.py`); 0 admits between every step.
    admission_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    admission_wait_ms: float = Field(default=20.0, ge=0.0, le=1000.0)
    #: Celery consumer threads per worker: requests it holds (running plus waiting for fair
    #: admission); None means 4 x `max_batch_size`.
    worker_threads: int | None = Field(default=None, ge=1, le=4096)
    #: At most this many generations in one broker message: an API process folds the ones
    #: committed while its previous message was being sent (`services/task_batching.py`).
    rows_per_message: int = Field(default=16, ge=1, le=256)
    #: How long a generation's token stream stays readable in Redis after its last event.
    stream_ttl_seconds: int = Field(default=600, ge=10, le=86_400)
    #: Database connections an API or worker process keeps open (up to 10 more under bursts).
    db_pool_size: int = Field(default=20, ge=1, le=500)
    #: A generation that runs without a claim (`core.row_start`) is shown `running` once it
    #: has decoded this long; a shorter one goes from queued to succeeded in one transaction.
    #: 0.3 rather than 0.1: at 32 clients most rows decode longer than 0.1 s, and marking them
    #: cost the worker about a tenth of its CPU per request (docs/scaling.md, session 27).
    running_mark_seconds: float = Field(default=0.3, ge=0, le=60)
    preload_model: bool = True
    #: The worker's engine loop runs in a child process of its own (`workers/engine/process.py`)
    #: instead of a thread beside its consumers, so its Python never waits for their GIL.
    engine_process: bool = True
    autotune_seconds: float = Field(default=300.0, gt=0)
    #: The auto-tuner replays this much of a policy's recent traffic (every version's requests)
    #: under its active rules; the window's request count sets how precisely it lands
    #: (docs/calibration.md, Auto-tuning).
    autotune_window_seconds: int = Field(default=3600, ge=60)
    autotune_min_samples: int = Field(default=200, ge=1)
    #: The most one auto-tuning move may change a category's refusal rate (a share of traffic).
    autotune_max_rate_step: float = Field(default=0.25, gt=0, le=1)
    autotune_hysteresis: float = Field(default=0.02, ge=0, le=1)
    #: Share of answered (`[respond]`) requests whose text is checked for a refusal (leaks).
    leak_sample_share: float = Field(default=0.1, ge=0.0, le=1.0)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_calibration_prompts: int = Field(default=200_000, ge=1)
    #: Redis: seconds before a message left unacknowledged by a dead worker is redelivered.
    visibility_timeout: float = Field(default=3600.0, gt=0)
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    #: How often beat looks for queued or running rows whose task message the broker lost.
    lost_task_check_seconds: float = Field(default=30.0, gt=0)
    #: A row younger than this is never taken for lost (its message may still be on its way).
    lost_task_grace_seconds: float = Field(default=30.0, ge=0)
    #: Port of a worker's Prometheus endpoint (`RCS_WORKER_METRICS_PORT`); None: not exposed.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: Failed authentications one client address may make per minute before it gets 429.
    auth_failures_per_minute: int = Field(default=30, ge=1)
    #: The run-state file of the supervising `rcs serve`, set by it for its children.
    supervisor_state: Path | None = None
    #: `json`: one JSON object per log line (with the request id); `text`: plain lines.
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _refuse_unsafe_secret(self) -> Settings:
        if not self.secret_key and self.environment == "local":
            try:
                self.secret_key = load_or_create_secret(self.data_dir)
            except OSError as exc:
                raise ValueError(
                    f"data dir {self.data_dir} is not writable: {unwritable_reason(exc)}"
                ) from exc
        if self.environment != "local" and self.secret_key.strip().lower() in UNSAFE_SECRETS:
            raise UnsafeSettings(
                f"RCS_SECRET_KEY is unsafe for environment {self.environment!r}: set a random secret"
            )
        if self.environment != "local" and len(self.secret_key) < 16:
            raise UnsafeSettings("RCS_SECRET_KEY must be at least 16 characters outside local mode")
        return self

    @property
    def embedded(self) -> bool:
        """True when a server is not configured: `rcs serve` then starts its own."""
        return self.database_url is None or self.broker_url is None

    @property
    def consumer_threads(self) -> int:
        return self.worker_threads or 4 * self.max_batch_size

    @property
    def redis_url(self) -> str:
        """Redis for notifications and token streams: the broker's server."""
        return self.celery_broker_url

    @property
    def sqlalchemy_url(self) -> str:
        return _required_url(self.database_url, "DATABASE_URL", "PostgreSQL")

    @property
    def celery_broker_url(self) -> str:
        return _required_url(self.broker_url, "REDIS_URL", "Redis")

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def model_name(self) -> str:
        """The served model's public name: its directory's name (`tiny`, `demo`, ...)."""
        return self.resolved_model_dir().name

    def resolved_model_dir(self) -> Path:
        """The configured model, else the demo model when trained, else the tiny one."""
        if self.model_dir is not None:
            return self.model_dir
        demo = self.models_dir / "demo"
        return demo if (demo / "config.json").exists() else self.models_dir / "tiny"


@lru_cache
def get_settings() -> Settings:
    return Settings()
