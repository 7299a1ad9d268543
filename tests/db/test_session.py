"""Unit of work: commit once at the edge, roll back on error, run after-commit work after it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from db.models import Tenant
from db.session import after_commit, create_session_factory, session_scope
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
