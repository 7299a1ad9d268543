"""Service settings, read once from the environment (pydantic-settings).

With no `DATABASE_URL` and no broker URL the service runs embedded: SQLite and kombu's
serverless `filesystem://` transport under `RCS_DATA_DIR`. Outside local mode an unsafe
secret is refused at start, not merely warned about.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

UNSAFE_SECRETS = frozenset({"", "changeme", "change-me", "secret", "local-dev-secret"})
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UnsafeSettings(ValueError):
    """Settings that must not be used outside local development."""


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
    secret_key: str = "local-dev-secret"
    model_dir: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    batch_flush_ms: int = Field(default=10, ge=0, le=10_000)
    preload_model: bool = True
    autotune_seconds: float = Field(default=300.0, gt=0)
    #: The auto-tuner reads this much recent traffic of the active version.
    autotune_window_seconds: int = Field(default=3600, ge=60)
    autotune_min_samples: int = Field(default=200, ge=1)
    autotune_max_step: float = Field(default=0.05, gt=0, le=1)
    autotune_hysteresis: float = Field(default=0.02, ge=0, le=1)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_calibration_prompts: int = Field(default=200_000, ge=1)
    #: Redis: seconds before a message left unacknowledged by a dead worker is redelivered.
    visibility_timeout: float = Field(default=3600.0, gt=0)
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    #: Port of a worker's Prometheus endpoint (`RCS_WORKER_METRICS_PORT`); None: not exposed.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: Failed authentications one client address may make per minute before it gets 429.
    auth_failures_per_minute: int = Field(default=30, ge=1)
    #: `json`: one JSON object per log line (with the request id); `text`: plain lines.
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _refuse_unsafe_secret(self) -> Settings:
        if self.environment != "local" and self.secret_key.strip().lower() in UNSAFE_SECRETS:
            raise UnsafeSettings(
                f"RCS_SECRET_KEY is unsafe for environment {self.environment!r}: set a random secret"
            )
        if self.environment != "local" and len(self.secret_key) < 16:
            raise UnsafeSettings("RCS_SECRET_KEY must be at least 16 characters outside local mode")
        return self

    @property
    def embedded(self) -> bool:
        """True when no servers are configured: SQLite plus the filesystem broker."""
        return self.database_url is None and self.broker_url is None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'rcs.sqlite3'}"

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

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
