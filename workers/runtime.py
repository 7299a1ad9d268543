"""Per-process worker state: the database session factory and the engine, made once."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings
from db.session import create_session_factory


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    return create_session_factory(get_settings().sqlalchemy_url)


@lru_cache(maxsize=1)
def engine() -> Any:
    """The model engine, loaded on first use (torch is imported only here)."""
    from workers.engine.batch import Engine

    settings = get_settings()
    return Engine.from_dir(str(settings.resolved_model_dir()))
