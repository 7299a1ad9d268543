"""Per-process worker state, made once: the database session factory, the engine, its loop, the
Redis client and the token-stream publisher. The worker's consumer threads share them."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import redis
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings
from db.session import create_session_factory

if TYPE_CHECKING:  # these import torch, which is loaded only when the engine is first used
    from workers.engine.batch import Engine
    from workers.engine.loop import EngineLoop
    from workers.engine.process import EngineProcess
    from workers.token_stream import TokenStreamPublisher

# lru_cache alone may build twice when consumer threads race on first use; a model must not.
_build_lock = threading.RLock()


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    settings = get_settings()
    return create_session_factory(settings.sqlalchemy_url, pool_size=settings.db_pool_size)


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url)


def engine() -> Engine:
    """The model engine, loaded on first use (torch is imported only here)."""
    with _build_lock:
        return _engine()


@lru_cache(maxsize=1)
def _engine() -> Engine:
    from workers.engine.batch import Engine

    return Engine.from_dir(str(get_settings().resolved_model_dir()))


def token_stream() -> TokenStreamPublisher:
    """The publisher of streamed rows' tokens (`workers.token_stream`)."""
    with _build_lock:
        return _token_stream()


@lru_cache(maxsize=1)
def _token_stream() -> TokenStreamPublisher:
    from workers.token_stream import TokenStreamPublisher

    return TokenStreamPublisher(
        engine().loaded, redis_client(), ttl=get_settings().stream_ttl_seconds
    )


def engine_loop() -> EngineLoop | EngineProcess:
    """The one continuous-batching loop of this process (`workers.engine.loop.EngineLoop`), or
    its proxy to the loop in a child process (`workers.engine.process`, `engine_process`)."""
    with _build_lock:
        return _engine_loop()


def flush_token_stream() -> None:
    """Wait until the streamed tokens handed over so far are written (a loop in a child process
    writes a row's tokens before it sends its result: nothing to wait for)."""
    if not get_settings().engine_process:
        token_stream().flush()


@lru_cache(maxsize=1)
def _engine_loop() -> EngineLoop | EngineProcess:
    if get_settings().engine_process:
        from workers.engine.process import EngineProcess

        return EngineProcess()
    return local_engine_loop()


def local_engine_loop() -> EngineLoop:
    """The loop itself, in this process: the worker's in a thread, or the engine process's."""
    with _build_lock:
        return _local_engine_loop()


@lru_cache(maxsize=1)
def _local_engine_loop() -> EngineLoop:
    from workers.engine.loop import configured_loop

    return configured_loop(engine(), get_settings(), on_events=token_stream().put)
