"""A generation row as JSON, both ways: what PostgreSQL's `row_to_json` writes (the insert's
and the recorder's `RETURNING`, a final notification's row) read back into a detached
`Generation`, and a `Generation` written in that shape (the row a message carries to the worker,
`core.row_start`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, TypeDecorator

from db.models import Generation


def _python_type(column: ColumnElement[Any]) -> type:
    kind = column.type
    if isinstance(kind, TypeDecorator):  # UTCDateTime says `object`; its impl says datetime
        kind = kind.impl_instance
    return kind.python_type


def generation_from_json(text: str) -> Generation:
    """A detached `Generation` from a row's JSON as PostgreSQL wrote it (`row_to_json`)."""
    return generation_from_row(json.loads(text))


def generation_from_row(raw: Mapping[str, Any]) -> Generation:
    """A detached `Generation` from a row's parsed JSON (`row_to_json`), read by the mapped
    columns' own types: what reading the row would give."""
    values: dict[str, Any] = {}
    for column in Generation.__table__.columns:
        if column.computed is not None or column.key not in raw:
            continue
        value, kind = raw[column.key], _python_type(column)
        if value is not None and kind is uuid.UUID:
            value = uuid.UUID(value)
        elif value is not None and kind is datetime:
            value = datetime.fromisoformat(value)
        values[column.key] = value
    return Generation(**values)


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
