"""Helpers shared by the repositories: loads that raise the entity's `NotFound`, unique
inserts, cache expiry after bulk UPDATEs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select, TextClause
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from db.errors import NotFound, RepositoryError
from db.models import Base

ModelT = TypeVar("ModelT", bound=Base)


_PSYCOPG = postgresql_psycopg.dialect()


def driver_sql(statement: TextClause) -> str:
    """A text statement in psycopg's own parameter style (`:name` as `%(name)s`), for the event
    loop's connections (`db.async_connections`): one SQL text for both paths."""
    return str(statement.compile(dialect=_PSYCOPG))


def get_or_raise(session: Session, model: type[ModelT], pk: Any, missing: type[NotFound]) -> ModelT:
    """The row of `model` with primary key `pk`, or `missing(pk)` raised."""
    found = session.get(model, pk)
    if found is None:
        raise missing(pk)
    return found


def one_or_raise(session: Session, stmt: Select[ModelT], missing: NotFound) -> ModelT:
    """The row `stmt` selects, or `missing` raised (a missing row and another tenant's row are
    the same error on purpose)."""
    found = session.scalar(stmt)
    if found is None:
        raise missing
    return found


def is_unique_violation(exc: IntegrityError) -> bool:
    """True for a unique-constraint violation on PostgreSQL (23505) or SQLite."""
    if getattr(exc.orig, "sqlstate", None) == "23505":
        return True
    return "UNIQUE constraint failed" in str(exc.orig)


def add_unique(session: Session, obj: Base, error: Callable[[], RepositoryError]) -> None:
    """Add and flush `obj` in a SAVEPOINT; a unique violation raises `error()` instead.

    The savepoint keeps the caller's transaction usable after the violation.
    """
    try:
        with session.begin_nested():
            session.add(obj)
    except IntegrityError as exc:
        if is_unique_violation(exc):
            raise error() from exc
        raise


def expire_cached(session: Session, model: type[Base], pk: Any) -> None:
    """Expire the session's copy of a row changed by a bulk UPDATE, if it holds one."""
    obj = session.identity_map.get(identity_key(model, pk))
    if obj is not None:
        session.expire(obj)
