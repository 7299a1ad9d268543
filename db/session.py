"""Engines, session factories and the unit of work: commit once, at the edge.

Repositories only `flush()`. The edge — one request (`api.deps.get_session`) or one task
(`session_scope`) — commits on success and rolls back on error. Work that must only happen once
the rows are visible to other processes can be registered with `after_commit` and is dropped if
the transaction rolls back (the routes commit, then send their task: `services.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_AFTER_COMMIT_KEY = "rcs_after_commit"


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url` whose pool outlives a database restart (`pool_pre_ping`)."""
    return create_engine(url, echo=echo, pool_pre_ping=True)


def create_session_factory(url_or_engine: str | Engine) -> sessionmaker[Session]:
    """A session factory; objects stay readable after commit (`expire_on_commit=False`)."""
    engine = create_db_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises."""
    with factory() as session, session.begin():
        yield session


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
