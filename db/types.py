"""Portable column types: JSONB on PostgreSQL / JSON on SQLite, UTC-aware timestamps, ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

#: JSON column type: JSONB on PostgreSQL, JSON (text) elsewhere. Python None is SQL NULL.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

#: Auto-increment surrogate key: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` that always round-trips as an aware UTC datetime, SQLite included.

    SQLite has no time zones: values are stored as naive UTC and tagged UTC on the way out, so
    code comparing timestamps never mixes naive and aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; use an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
