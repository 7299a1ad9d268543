"""Shared fixtures.

Database (integration tests, real PostgreSQL; nothing is mocked):

* ``pg_admin_url`` — URL of a maintenance database with CREATEDB rights: ``RCS_TEST_PG_ADMIN_URL``
  when set, else the embedded PostgreSQL that ``tests/servers.py`` starts for this test process.
* ``pg_url`` (session) — a database created for this test process, migrated with
  ``alembic upgrade head``, dropped at the end. Tests must not leave data in it; use
  ``db_session`` (rolled back) unless they clean up after themselves.
* ``pg_engine`` (session) — an engine on ``pg_url``.
* ``db_session`` — a Session inside a transaction that is rolled back after the test; code under
  test may call ``commit()``, which only releases a SAVEPOINT.
* ``empty_pg_url`` — a fresh, empty database for one test (migration tests), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import Engine, make_url
from sqlalchemy.orm import Session

from db.migrate import upgrade
from db.session import create_db_engine
from tests import servers

#: Live-stack fixtures (worker process, uvicorn) for the tests that run the whole path.
pytest_plugins = ["tests.api.live"]


def _libpq_dsn(url: str) -> str:
    """A psycopg connection string from a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def temporary_pg_database(admin_url: str, *, label: str = "") -> Iterator[str]:
    """Create an empty database ``rcs_test_[label_]<pid>_<random>``, yield its SQLAlchemy URL,
    and drop it afterwards (terminating leftover connections first)."""
    name = f"rcs_test_{label + '_' if label else ''}{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(_libpq_dsn(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq_dsn(admin_url), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def pytest_unconfigure(config: pytest.Config) -> None:
    servers.stop()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return servers.pg_admin_url()


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    with temporary_pg_database(pg_admin_url) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_db_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_session(pg_engine: Engine) -> Iterator[Session]:
    with pg_engine.connect() as connection:
        transaction = connection.begin()
        session = Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            session.close()
            transaction.rollback()


@pytest.fixture
def empty_pg_url(pg_admin_url: str) -> Iterator[str]:
    with temporary_pg_database(pg_admin_url, label="empty") as url:
        yield url
