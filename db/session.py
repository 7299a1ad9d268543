"""Engines, session factories and the unit of work: commit once, at the edge.

Repositories only `flush()`. The edge — one request (`api.deps.get_session`) or one task
(`session_scope`) — commits on success and rolls back on error. Work that must only happen once
the rows are visible to other processes can be registered with `after_commit` and is dropped if
the transaction rolls back (the routes commit, then send their task: `services.tasks`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

_AFTER_COMMIT_KEY = "rcs_after_commit"


#: A pooled connection unused for this long is pinged before it is handed out.
PING_IDLE_SECONDS = 1.0
_CHECKED_IN_KEY = "rcs_checked_in"


def create_db_engine(url: str, *, echo: bool = False, pool_size: int = 5) -> Engine:
    """An engine for `url` whose pool outlives a database restart: a connection idle for over
    `PING_IDLE_SECONDS` is pinged before use and replaced if dead. A ping on every checkout
    (`pool_pre_ping`) cost a round trip per transaction, three on each generation's path; a
    connection in steady use needs none (the most recently used is handed out first, so the
    others go idle), and a database that restarts under load fails the work in flight anyway
    (the worker waits it out: `db.retry`; the API answers 503 with Retry-After).

    `pool_size` connections stay open; up to 10 more are opened under load and closed when
    returned. A serving process wants enough that steady load opens none (`RCS_DB_POOL_SIZE`):
    at 32 clients the API opened a connection for every fifth request with 5."""
    engine = create_engine(url, echo=echo, pool_use_lifo=True, pool_size=pool_size)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    # `record.info` belongs to this DBAPI connection: a replaced one starts without the stamp.
    record.info[_CHECKED_IN_KEY] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Callable[[Any, Any, Any], None]:
    def ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN_KEY)
        if checked_in is None or time.monotonic() - checked_in < PING_IDLE_SECONDS:
            return  # new, or in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out another (a new one if needed).
            raise sa_exc.DisconnectionError(f"a pooled connection is dead: {exc}") from exc

    return ping


def create_session_factory(
    url_or_engine: str | Engine, *, pool_size: int = 5
) -> sessionmaker[Session]:
    """A session factory; objects stay readable after commit (`expire_on_commit=False`)."""
    if isinstance(url_or_engine, str):
        engine = create_db_engine(url_or_engine, pool_size=pool_size)
    else:
        engine = url_or_engine
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
