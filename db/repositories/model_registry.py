"""The served models: name, local path and refusal-token manifest."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import ModelNotFound
from db.models import ServedModel
from db.repositories.common import one_or_raise


def register_model(
    *, session: Session, name: str, path: str, manifest: dict[str, Any]
) -> ServedModel:
    """Insert a model, or update the path and manifest of the one with this name."""
    model = session.scalar(select(ServedModel).where(ServedModel.name == name))
    if model is None:
        model = ServedModel(name=name, path=path, manifest=manifest)
        session.add(model)
    else:
        model.path = path
        model.manifest = manifest
    session.flush()
    return model


def get_model(*, session: Session, name: str) -> ServedModel:
    """The model with this name, or `ModelNotFound`."""
    stmt = select(ServedModel).where(ServedModel.name == name)
    return one_or_raise(session, stmt, ModelNotFound(name))


def list_models(*, session: Session) -> list[ServedModel]:
    """Every registered model, by name."""
    return list(session.scalars(select(ServedModel).order_by(ServedModel.name)))
