"""Settings come from the environment; unsafe secrets are refused outside local mode."""

from __future__ import annotations

import pytest

from core.queue import celery_config
from core.settings import SECRET_FILE, UNSAFE_SECRETS, NotConfigured, Settings


def test_no_urls_means_embedded_and_no_url_is_invented(tmp_path, monkeypatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "RCS_DATABASE_URL", "RCS_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.embedded
    # Only `rcs serve` knows where its embedded servers listen; nothing falls back to a file.
    with pytest.raises(NotConfigured, match="DATABASE_URL"):
        settings.sqlalchemy_url  # noqa: B018
    with pytest.raises(NotConfigured, match="REDIS_URL"):
        celery_config(settings)


def test_local_secret_is_random_made_once_and_private(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RCS_SECRET_KEY", raising=False)
    monkeypatch.setenv("RCS_ENVIRONMENT", "local")
    first = Settings(data_dir=tmp_path).secret_key
    assert first not in UNSAFE_SECRETS and len(first) >= 32
    assert Settings(data_dir=tmp_path).secret_key == first
    assert (tmp_path / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    assert Settings(data_dir=tmp_path / "other").secret_key != first


def test_missing_secret_is_refused_in_production(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RCS_SECRET_KEY", raising=False)
    monkeypatch.setenv("RCS_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="RCS_SECRET_KEY"):
        Settings(data_dir=tmp_path)
    assert not (tmp_path / SECRET_FILE).exists()


def test_urls_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@db/rcs")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    settings = Settings()
    assert not settings.embedded
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db/rcs"
    config = celery_config(settings)
    assert config["broker_url"] == "redis://cache:6379/0"
    assert config["broker_transport_options"] == {"visibility_timeout": 3600.0}


@pytest.mark.parametrize("secret", ["local-dev-secret", "changeme", "short"])
def test_unsafe_secret_is_refused_in_production(monkeypatch, secret: str) -> None:
    monkeypatch.setenv("RCS_ENVIRONMENT", "production")
    monkeypatch.setenv("RCS_SECRET_KEY", secret)
    with pytest.raises(ValueError, match="RCS_SECRET_KEY"):
        Settings()


def test_model_dir_prefers_a_trained_demo_model(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_model_dir() == tmp_path / "models" / "tiny"
    (tmp_path / "models" / "demo").mkdir(parents=True)
    (tmp_path / "models" / "demo" / "config.json").write_text("{}")
    assert settings.resolved_model_dir() == tmp_path / "models" / "demo"
