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


def _policy_version_row(url: str, sql: str) -> tuple[object, ...]:
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            row = connection.execute(text(sql)).one()
            return tuple(row)
    finally:
        engine.dispose()


def _write_policy_version(url: str, columns: str, values: str, *, then: str = "") -> None:
    """A tenant, a policy and its version 1 written in SQL at an older revision (`columns` and
    the `values` after `id, policy_id, version`, as that revision's table has them), then the
    statement `then`."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenants (id, name, quotas) VALUES (gen_random_uuid(), 't', '{}');"
                    "INSERT INTO policies (id, tenant_id, name) "
                    "SELECT gen_random_uuid(), id, 'p' FROM tenants;"
                    f"INSERT INTO policy_versions {columns}"
                    f" SELECT gen_random_uuid(), id, 1, {values}, 'system' FROM policies;" + then
                )
            )
    finally:
        engine.dispose()


def test_the_policy_mode_moves_into_rules_and_back(empty_pg_url: str) -> None:
    """0002 keeps one column of truth: the `mode` column's value lands in `rules` (even where
    the JSON lacked it) and comes back out on downgrade."""
    upgrade(empty_pg_url, "0001")
    _write_policy_version(
        empty_pg_url,
        "(id, policy_id, version, mode, rules, created_by)",
        "'bias', '{\"categories\": {}}'",
    )
    upgrade(empty_pg_url)
    assert _policy_version_row(empty_pg_url, "SELECT rules->>'mode' FROM policy_versions") == (
        "bias",
    )
    downgrade(empty_pg_url, "0001")
    assert _policy_version_row(empty_pg_url, "SELECT mode FROM policy_versions") == ("bias",)


def test_leak_counts_start_at_zero_on_existing_statistics(empty_pg_url: str) -> None:
    """0004 adds the leak columns to rows written before it (0 checks) and drops them again."""
    upgrade(empty_pg_url, "0003")
    _write_policy_version(
        empty_pg_url,
        "(id, policy_id, version, rules, created_by)",
        '\'{"mode": "bias"}\'',
        then="INSERT INTO refusal_stats (tenant_id, policy_version_id, category,"
        " bucket_start, requests, refusals, sum_p, histogram)"
        " SELECT p.tenant_id, v.id, 'safety', now(), 3, 1, 0.5, '[]'"
        " FROM policy_versions v JOIN policies p ON p.id = v.policy_id",
    )
    upgrade(empty_pg_url)
    row = _policy_version_row(
        empty_pg_url, "SELECT requests, leak_checks, leaks FROM refusal_stats"
    )
    assert row == (3, 0, 0)
    downgrade(empty_pg_url, "0003")
    columns = _policy_version_row(
        empty_pg_url,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'refusal_stats' AND column_name LIKE 'leak%'",
    )
    assert columns == (0,)


def test_statistics_stay_live_and_shadow_rows_go_on_downgrade(empty_pg_url: str) -> None:
    """0003 keys statistics by role: existing rows become live, a shadow row may share the
    live key, and downgrading drops shadow rows so the old key stays unique."""
    upgrade(empty_pg_url, "0002")
    histogram = "'[" + ", ".join(["0"] * 64) + "]'"
    _write_policy_version(
        empty_pg_url,
        "(id, policy_id, version, rules, created_by)",
        '\'{"mode": "bias"}\'',
        then="INSERT INTO refusal_stats (tenant_id, policy_version_id, category,"
        " bucket_start, requests, refusals, sum_p, histogram)"
        " SELECT p.tenant_id, v.id, 'safety', '2026-01-01T00:00Z', 10, 3, 2.5,"
        f" {histogram} FROM policy_versions v JOIN policies p ON v.policy_id = p.id",
    )
    upgrade(empty_pg_url, "0003")
    engine = create_db_engine(empty_pg_url)
    try:
        with engine.begin() as connection:
            assert connection.execute(text("SELECT shadow FROM refusal_stats")).all() == [(False,)]
            connection.execute(
                text(
                    "INSERT INTO refusal_stats (tenant_id, policy_version_id, category,"
                    " bucket_start, shadow, requests, refusals, sum_p, histogram)"
                    " SELECT tenant_id, policy_version_id, category, bucket_start, true, 10, 9,"
                    " 2.5, histogram FROM refusal_stats"
                )
            )
        downgrade(empty_pg_url, "0002")
        with engine.begin() as connection:
            rows = connection.execute(text("SELECT requests, refusals FROM refusal_stats")).all()
            assert rows == [(10, 3)]
    finally:
        engine.dispose()
    upgrade(empty_pg_url)
    assert _schema_diff(empty_pg_url) == []


def test_first_token_is_computed_for_rows_written_before_0006(empty_pg_url: str) -> None:
    """0006 fills `generations.first_token` from summaries already stored (null s as -inf), and
    keeps it in step when a summary is written later."""
    upgrade(empty_pg_url, "0005")
    summary = (
        '{"s": [1.5, null, -2.0, 0.25, 3.0], "m": 4.0, "l1": 5.0, "lt": 6.0, "temperature": 1.0}'
    )
    _write_policy_version(
        empty_pg_url,
        "(id, policy_id, version, rules, created_by)",
        '\'{"mode": "bias"}\'',
        then="INSERT INTO generations (id, tenant_id, policy_version_id, model, messages,"
        " params, status, summary) SELECT gen_random_uuid(), p.tenant_id, v.id, 'm',"
        f" '\"hi\"', '{{}}', 'succeeded', '{summary}' FROM policy_versions v"
        " JOIN policies p ON v.policy_id = p.id;"
        "INSERT INTO generations (id, tenant_id, policy_version_id, model, messages,"
        " params, status) SELECT gen_random_uuid(), tenant_id, policy_version_id, 'm',"
        " messages, params, 'queued' FROM generations",
    )
    upgrade(empty_pg_url)
    engine = create_db_engine(empty_pg_url)
    try:
        with engine.begin() as connection:
            rows = connection.execute(
                text("SELECT status, first_token FROM generations ORDER BY status")
            ).all()
            assert rows == [
                ("queued", None),
                ("succeeded", [1.5, float("-inf"), -2.0, 0.25, 3.0, 4.0, 5.0, 6.0, 1.0]),
            ]
            connection.execute(
                text(f"UPDATE generations SET summary = '{summary}' WHERE status = 'queued'")
            )
            filled = connection.execute(text("SELECT first_token FROM generations")).scalars()
            assert all(f is not None and f[0] == 1.5 for f in filled)
    finally:
        engine.dispose()
