"""A generation row as JSON, both ways: what PostgreSQL's `row_to_json` writes (the insert's
and the recorder's `RETURNING`, a final notification's row) read back into a detached
`Generation`, and a `Generation` written in that shape (the row a message carries to the worker,
`core.row_start`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, TypeDecorator, inspect
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import ClassManager

from db.models import Generation


def _python_type(column: ColumnElement[Any]) -> type:
    kind = column.type
    if isinstance(kind, TypeDecorator):  # UTCDateTime says `object`; its impl says datetime
        kind = kind.impl_instance
    return kind.python_type


def _reader(kind: type) -> Callable[[Any], Any] | None:
    """How a JSON value of a column of this Python type becomes the mapped value."""
    if kind is uuid.UUID:
        return uuid.UUID
    if kind is datetime:
        return datetime.fromisoformat
    return None


@cache
def _manager() -> ClassManager[Generation]:
    """The class's instrumentation, its mappers configured (a constructor would configure them;
    `new_instance` does not, and an unconfigured attribute cannot be read)."""
    configure_mappers()
    return inspect(Generation).class_manager


@cache
def _columns() -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """The mapped, stored columns and their readers, worked out once (a row is read per request:
    the column types' lookups cost as much as the reading)."""
    return tuple(
        (column.key, _reader(_python_type(column)))
        for column in Generation.__table__.columns
        if column.computed is None
    )


def generation_from_json(text: str) -> Generation:
    """A detached `Generation` from a row's JSON as PostgreSQL wrote it (`row_to_json`)."""
    return generation_from_row(json.loads(text))


def generation_from_row(raw: Mapping[str, Any]) -> Generation:
    """A detached `Generation` from a row's parsed JSON (`row_to_json`), read by the mapped
    columns' own types: what reading the row would give. Made as the ORM's loader makes a
    loaded row (an instance without `__init__`, its values put in place as committed state):
    the constructor's attribute events cost 3-4x as much, once per request in the API and the
    worker."""
    values: dict[str, Any] = {}
    for key, read in _columns():
        if key not in raw:
            continue
        value = raw[key]
        values[key] = value if value is None or read is None else read(value)
    row: Generation = _manager().new_instance()
    row.__dict__.update(values)
    return row


def generation_to_row(generation: Generation) -> dict[str, Any]:
    """A generation's columns as JSON (`row_to_json`'s shape): `generation_from_row` reads it
    back."""
    row: dict[str, Any] = {}
    for column in Generation.__table__.columns:
        if column.computed is not None:
            continue
        value = getattr(generation, column.key)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        row[column.key] = value
    return row
