"""Queries shared by the two job tables (generations and calibration runs)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import UNFINISHED, CalibrationRun, Generation

JobModel = type[Generation] | type[CalibrationRun]


def unfinished_before(
    *, session: Session, model: JobModel, before: datetime, limit: int
) -> list[uuid.UUID]:
    """Ids of the queued or running rows created before `before`, oldest first."""
    query = (
        select(model.id)
        .where(UNFINISHED, model.created_at < before)
        .order_by(model.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))
