"""Unit of work: commit once at the edge, roll back on error, run after-commit work after it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, delete, select
from sqlalchemy.orm import Session

from db.models import Tenant
from db.session import after_commit, create_db_engine, create_session_factory, session_scope
from tests.db.factories import make_tenant

pytestmark = pytest.mark.integration


def _tenant_exists(engine: Engine, name: str) -> bool:
    with Session(engine) as session:
        return session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None


def test_session_scope_commits_on_success_and_rolls_back_on_error(pg_engine: Engine) -> None:
    factory = create_session_factory(pg_engine)
    sent: list[str] = []
    try:
        with session_scope(factory) as session:
            make_tenant(session, "committed-tenant")
            after_commit(session, lambda: sent.append("committed"))
            assert sent == []  # not before the commit
        assert sent == ["committed"] and _tenant_exists(pg_engine, "committed-tenant")

        with pytest.raises(RuntimeError), session_scope(factory) as session:
            make_tenant(session, "rolled-back-tenant")
            after_commit(session, lambda: sent.append("rolled back"))
            raise RuntimeError("boom")
        assert sent == ["committed"] and not _tenant_exists(pg_engine, "rolled-back-tenant")
    finally:
        with session_scope(factory) as session:
            session.execute(delete(Tenant).where(Tenant.name == "committed-tenant"))


def test_after_commit_waits_for_the_outermost_transaction(db_session: Session) -> None:
    sent: list[int] = []
    with db_session.begin_nested():
        after_commit(db_session, lambda: sent.append(1))
    assert sent == []  # a released SAVEPOINT is not a commit
    db_session.commit()
    assert sent == [1]


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_a_connection_in_steady_use_is_not_pinged_and_an_idle_dead_one_is_replaced(
    pg_url: str, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_db_engine(pg_url)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    try:
        first = _backend_pid(engine)
        assert [_backend_pid(engine) for _ in range(5)] == [first] * 5
        assert pings == []  # reused at once: no round trip before each use

        # The server ends the pooled connection (as a restart would) while it sits idle.
        admin = create_engine(pg_admin_url)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_terminate_backend({first})")
        admin.dispose()
        monkeypatch.setattr("db.session.PING_IDLE_SECONDS", 0.0)
        replaced = _backend_pid(engine)  # pinged, found dead, replaced: no error
        assert replaced != first and len(pings) == 1
    finally:
        engine.dispose()
