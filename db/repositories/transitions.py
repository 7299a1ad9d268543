"""Guarded status changes of job rows (generations, calibration runs).

A change is one ``UPDATE ... WHERE id = ... AND status IN (...)``: atomic and idempotent, it
returns whether it moved the row, so a redelivered task that finds its row final does nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import FINAL_STATUSES, JOB_STATUSES, CalibrationRun, Generation
from db.repositories.common import expire_cached
from db.types import utcnow

#: The statuses a job can still leave.
ACTIVE_STATUSES = tuple(s for s in JOB_STATUSES if s not in FINAL_STATUSES)

JobModel = type[Generation] | type[CalibrationRun]


def transition(
    session: Session,
    model: JobModel,
    row_id: uuid.UUID,
    *,
    from_statuses: Sequence[str],
    values: dict[str, Any],
    tenant_id: uuid.UUID | None = None,
) -> bool:
    """Set `values` on the row if its status is one of `from_statuses` (and, when given, it
    belongs to `tenant_id`); True if the row moved."""
    stmt = update(model).where(model.id == row_id, model.status.in_(from_statuses))
    if tenant_id is not None:
        stmt = stmt.where(model.tenant_id == tenant_id)
    moved = session.execute(
        stmt.values(**values).returning(model.id),
        execution_options={"synchronize_session": False},
    ).all()
    expire_cached(session, model, row_id)
    return len(moved) == 1


def start(session: Session, model: JobModel, row_id: uuid.UUID) -> bool:
    """queued -> running, stamping `started_at`. False if the row was not queued."""
    values = {"status": "running", "started_at": utcnow()}
    return transition(session, model, row_id, from_statuses=("queued",), values=values)


def finish(
    session: Session,
    model: JobModel,
    row_id: uuid.UUID,
    status: str,
    *,
    values: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
) -> bool:
    """queued|running -> the final `status` with `values`, stamping `finished_at`. False if the
    row is already final."""
    values = {**(values or {}), "status": status, "finished_at": utcnow()}
    return transition(
        session, model, row_id, from_statuses=ACTIVE_STATUSES, values=values, tenant_id=tenant_id
    )
