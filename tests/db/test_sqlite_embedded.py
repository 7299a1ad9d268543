"""The embedded default on SQLite: the migrated schema serves the repositories the same way.

PostgreSQL is the reference (every other test); this smoke test covers what differs on SQLite:
foreign keys, aware timestamps, the stats upsert and guarded status updates.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.models import HISTOGRAM_BINS
from db.repositories.generations import get_generation, mark_running, mark_succeeded
from db.repositories.policies import resolve_active_version
from db.repositories.stats import StatIncrement, category_totals, increment_stats
from db.repositories.tenants import find_api_key
from db.session import create_db_engine, create_session_factory, session_scope
from tests.db.factories import SERVER_SECRET, make_generation, make_policy, make_tenant

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'var' / 'rcs.sqlite3'}"
    upgrade(url)
    engine = create_db_engine(url)
    yield create_session_factory(engine)
    engine.dispose()


def test_repositories_work_on_the_embedded_sqlite_database(
    sqlite_factory: sessionmaker[Session],
) -> None:
    with session_scope(sqlite_factory) as session:
        tenant, plaintext = make_tenant(session, "embedded")
        policy = make_policy(session, tenant)
        generation = make_generation(session, tenant, policy)
        tenant_id, generation_id = tenant.id, generation.id
        version_id = policy.active_version_id
    assert version_id is not None

    bucket = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    histogram = [1] * HISTOGRAM_BINS
    for _ in range(2):
        with session_scope(sqlite_factory) as session:
            assert find_api_key(session=session, presented=plaintext, secret=SERVER_SECRET)
            assert resolve_active_version(session=session, tenant_id=tenant_id).id == version_id
            increment_stats(
                session=session,
                increments=[
                    StatIncrement(tenant_id, version_id, "safety", bucket, 1, 1, 0.5, histogram)
                ],
            )
    with session_scope(sqlite_factory) as session:
        assert mark_running(session=session, generation_id=generation_id)
        assert mark_succeeded(
            session=session,
            generation_id=generation_id,
            output="ok",
            refused=False,
            refusal_category=None,
        )
        assert not mark_succeeded(
            session=session,
            generation_id=generation_id,
            output="again",
            refused=False,
            refusal_category=None,
        )
    with session_scope(sqlite_factory) as session:
        stored = get_generation(session=session, tenant_id=tenant_id, generation_id=generation_id)
        assert (stored.status, stored.output) == ("succeeded", "ok")
        assert stored.created_at.tzinfo is not None and stored.finished_at is not None
        assert stored.finished_at >= stored.created_at  # aware vs aware: comparable
        totals = category_totals(session=session, tenant_id=tenant_id, start=bucket)
        assert totals["safety"].requests == 2 and totals["safety"].histogram == [2] * HISTOGRAM_BINS
        key = find_api_key(session=session, presented=plaintext, secret=SERVER_SECRET)
        assert key is not None and key.last_used_at is not None
        assert key.last_used_at.tzinfo is UTC
