"""Alembic owns the schema: upgrade on an empty database equals the models; everything downgrades."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from db.migrate import alembic_config, downgrade, upgrade
from db.models import Base
from db.session import create_db_engine

pytestmark = pytest.mark.integration

MODEL_TABLES = set(Base.metadata.tables)


def _schema_diff(url: str) -> list[object]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _assert_round_trip(url: str) -> None:
    upgrade(url)
    assert _tables(url) == MODEL_TABLES | {"alembic_version"}
    assert _schema_diff(url) == []
    downgrade(url, "base")
    assert _tables(url) == {"alembic_version"}
    upgrade(url)
    assert _schema_diff(url) == []


def test_postgres_upgrade_matches_models_and_downgrades_to_nothing(empty_pg_url: str) -> None:
    _assert_round_trip(empty_pg_url)


def test_autogenerate_would_detect_a_drifted_model(empty_pg_url: str) -> None:
    upgrade(empty_pg_url)
    engine = create_db_engine(empty_pg_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE tenants ALTER COLUMN name TYPE varchar(7)"))
    finally:
        engine.dispose()
    assert _schema_diff(empty_pg_url), "compare_type must notice a changed column type"


def test_every_revision_downgrades_one_step_at_a_time(empty_pg_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(empty_pg_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions("base", "heads")))]
    assert revisions, "there is at least one migration"
    for revision in revisions:
        upgrade(empty_pg_url, revision)
        downgrade(empty_pg_url, "-1")
        upgrade(empty_pg_url, revision)
    assert _schema_diff(empty_pg_url) == []
