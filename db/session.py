"""Engines, session factories and the unit of work: commit once, at the edge.

Repositories only `flush()`. The edge — one request (`session_dependency`) or one task
(`session_scope`) — commits on success and rolls back on error. Work that must only happen once
the rows are visible to other processes (sending a Celery task) is registered with
`after_commit` and dropped if the transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

_AFTER_COMMIT_KEY = "rcs_after_commit"


def create_db_engine(url: str, *, echo: bool = False, sqlite_foreign_keys: bool = True) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL, a busy timeout and real savepoints.

    `sqlite_foreign_keys=False` is for Alembic batch migrations, which copy and drop tables.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if in_memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, echo=echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own handling breaks SAVEPOINT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA foreign_keys={'ON' if sqlite_foreign_keys else 'OFF'}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def create_session_factory(url_or_engine: str | Engine) -> sessionmaker[Session]:
    """A session factory; objects stay readable after commit (`expire_on_commit=False`)."""
    engine = create_db_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises."""
    with factory() as session, session.begin():
        yield session


def session_dependency(factory: sessionmaker[Session]) -> Callable[[], Iterator[Session]]:
    """A generator function usable as a FastAPI dependency: one session per request.

    ``SessionDep = Annotated[Session, Depends(session_dependency(factory))]``.
    """

    def get_session() -> Iterator[Session]:
        with session_scope(factory) as session:
            yield session

    return get_session


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction commits; forget it on rollback.

    Used to enqueue tasks only after the rows they refer to are visible to a worker.
    """
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a SAVEPOINT released: the work is not visible yet
        return
    callbacks: list[Callable[[], None]] = session.info.pop(_AFTER_COMMIT_KEY, [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_transaction_end")
def _drop_after_commit(session: Session, transaction: Any) -> None:
    # Fires after `after_commit`; whatever is still pending belongs to a rolled-back or closed
    # outermost transaction and must not run.
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT_KEY, None)
