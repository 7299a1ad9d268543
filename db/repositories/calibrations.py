"""Calibration runs and their items (prompt, optional label, first-token summary).

Runs are tenant-scoped for the API; workers load them by id. Status changes are guarded
UPDATEs (`transitions`, like generations'): they return whether they moved the row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from core.summary import SummaryRow
from db.errors import CalibrationRunNotFound
from db.models import CALIBRATION_SPLITS, CALIBRATION_TARGET_KINDS, CalibrationItem, CalibrationRun
from db.repositories.common import expire_cached, get_or_raise, one_or_raise
from db.repositories.policies import get_policy
from db.repositories.transitions import ACTIVE_STATUSES, finish, start, transition


@dataclass(frozen=True)
class NewCalibrationItem:
    """One prompt to add to a run: text or chat messages, optional category label, split."""

    prompt: Any
    label: str | None = None
    split: str = "calibration"


@dataclass(frozen=True)
class NewCalibrationRun:
    """What a run is asked to do, carried from the route to the row (whose columns these are):
    reach per-category `targets` with `method`, the targets read as `target_kind`, with
    `holdout_fraction` of the prompts held out, activating the result at once if `auto_apply`.

    `method` None: the policy's active mode decides, and `services.calibrations.open_run` fills
    it in before the run is stored."""

    targets: dict[str, float]
    method: str | None
    target_kind: str
    holdout_fraction: float = 0.0
    auto_apply: bool = False


def create_run(
    *, session: Session, tenant_id: uuid.UUID, policy_id: uuid.UUID, new: NewCalibrationRun
) -> CalibrationRun:
    """A new `queued` run for one of the tenant's policies (`PolicyNotFound` otherwise)."""
    if new.target_kind not in CALIBRATION_TARGET_KINDS:
        raise ValueError(f"target_kind must be one of {CALIBRATION_TARGET_KINDS}")
    if new.method is None:
        raise ValueError("a stored run names its method")
    get_policy(session=session, tenant_id=tenant_id, policy_id=policy_id)
    run = CalibrationRun(
        tenant_id=tenant_id, policy_id=policy_id, status="queued", done=0, total=0, **asdict(new)
    )
    session.add(run)
    session.flush()
    return run


def get_run(*, session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID) -> CalibrationRun:
    """A tenant's run by id; another tenant's is `CalibrationRunNotFound` too."""
    stmt = select(CalibrationRun).where(
        CalibrationRun.id == run_id, CalibrationRun.tenant_id == tenant_id
    )
    return one_or_raise(session, stmt, CalibrationRunNotFound(run_id))


def load_run(*, session: Session, run_id: uuid.UUID) -> CalibrationRun:
    """A run by id with no tenant filter, for workers."""
    return get_or_raise(session, CalibrationRun, run_id, CalibrationRunNotFound)


def list_runs(*, session: Session, tenant_id: uuid.UUID, limit: int = 50) -> list[CalibrationRun]:
    """A tenant's runs, newest first."""
    stmt = (
        select(CalibrationRun)
        .where(CalibrationRun.tenant_id == tenant_id)
        .order_by(CalibrationRun.created_at.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def add_items(*, session: Session, run_id: uuid.UUID, items: Sequence[NewCalibrationItem]) -> int:
    """Append items in bulk (indices continue after existing ones); updates `total`."""
    for item in items:
        if item.split not in CALIBRATION_SPLITS:
            raise ValueError(f"split must be one of {CALIBRATION_SPLITS}")
    start = session.scalar(
        select(func.count()).select_from(CalibrationItem).where(CalibrationItem.run_id == run_id)
    )
    start = start or 0
    if items:
        session.execute(
            insert(CalibrationItem),
            [
                {
                    "run_id": run_id,
                    "idx": start + i,
                    "prompt": item.prompt,
                    "label": item.label,
                    "split": item.split,
                }
                for i, item in enumerate(items)
            ],
        )
    session.execute(
        update(CalibrationRun).where(CalibrationRun.id == run_id).values(total=start + len(items)),
        execution_options={"synchronize_session": "fetch"},
    )
    return len(items)


def list_items(
    *, session: Session, run_id: uuid.UUID, split: str | None = None
) -> list[CalibrationItem]:
    """A run's items in index order, optionally one split only."""
    stmt = select(CalibrationItem).where(CalibrationItem.run_id == run_id)
    if split is not None:
        stmt = stmt.where(CalibrationItem.split == split)
    return list(session.scalars(stmt.order_by(CalibrationItem.idx)))


def store_summaries(
    *, session: Session, run_id: uuid.UUID, summaries: Mapping[int, SummaryRow]
) -> None:
    """Store first-token summaries by item index, in one executemany UPDATE."""
    if not summaries:
        return
    table = CalibrationItem.__table__
    assert isinstance(table, Table)  # a mapped class's table, typed by SQLAlchemy as a FromClause
    stmt = (
        update(table)
        .where(table.c.run_id == bindparam("b_run_id"), table.c.idx == bindparam("b_idx"))
        .values(summary=bindparam("b_summary"))
    )
    params = [{"b_run_id": run_id, "b_idx": i, "b_summary": s} for i, s in summaries.items()]
    session.execute(stmt, params)
    for obj in list(session.identity_map.values()):  # loaded items now hold stale summaries
        if isinstance(obj, CalibrationItem) and obj.run_id == run_id:
            session.expire(obj, ["summary"])


def mark_run_running(*, session: Session, run_id: uuid.UUID) -> bool:
    """queued -> running. False if the run was not queued."""
    return start(session, CalibrationRun, run_id)


def update_progress(*, session: Session, run_id: uuid.UUID, done: int) -> bool:
    """Set `done` on an unfinished run. False if the run is already final."""
    return transition(
        session, CalibrationRun, run_id, from_statuses=ACTIVE_STATUSES, values={"done": done}
    )


def store_result(
    *,
    session: Session,
    run_id: uuid.UUID,
    result: dict[str, Any],
    produced_version_id: uuid.UUID | None = None,
) -> bool:
    """Finish a run: store its result and proposed version, -> succeeded. False if final."""
    values = {
        "result": result,
        "produced_version_id": produced_version_id,
        "done": CalibrationRun.total,
    }
    return finish(session, CalibrationRun, run_id, "succeeded", values=values)


def mark_run_failed(*, session: Session, run_id: uuid.UUID, error: str) -> bool:
    """queued|running -> failed with an error message. False if already final."""
    return finish(session, CalibrationRun, run_id, "failed", values={"error": error})


def mark_run_cancelled(
    *, session: Session, run_id: uuid.UUID, tenant_id: uuid.UUID | None = None
) -> bool:
    """queued|running -> cancelled (scoped to `tenant_id` when given). False if already final."""
    return finish(session, CalibrationRun, run_id, "cancelled", tenant_id=tenant_id)


def iter_item_pages(
    *, session: Session, run_id: uuid.UUID, page_size: int = 512, missing_summary: bool = False
) -> Iterator[list[CalibrationItem]]:
    """A run's items in index order, one page at a time (keyset on `idx`), so a 100k-prompt run
    is never loaded at once; `missing_summary` skips items already scored (a resumed run)."""
    last = -1
    while True:
        stmt = select(CalibrationItem).where(
            CalibrationItem.run_id == run_id, CalibrationItem.idx > last
        )
        if missing_summary:
            stmt = stmt.where(CalibrationItem.summary.is_(None))
        page = list(session.scalars(stmt.order_by(CalibrationItem.idx).limit(page_size)))
        if not page:
            return
        yield page
        last = page[-1].idx


def scored_items(
    *, session: Session, run_id: uuid.UUID, split: str
) -> list[tuple[dict[str, Any], str | None]]:
    """(summary, label) of every scored item of one split, in index order (columns only)."""
    stmt = (
        select(CalibrationItem.summary, CalibrationItem.label)
        .where(
            CalibrationItem.run_id == run_id,
            CalibrationItem.split == split,
            CalibrationItem.summary.is_not(None),
        )
        .order_by(CalibrationItem.idx)
    )
    return [(summary, label) for summary, label in session.execute(stmt)]


def count_scored(*, session: Session, run_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        CalibrationItem.run_id == run_id, CalibrationItem.summary.is_not(None)
    )
    return int(session.scalar(stmt) or 0)


def replace_result(
    *,
    session: Session,
    run_id: uuid.UUID,
    result: dict[str, Any],
    produced_version_id: uuid.UUID | None,
    targets: dict[str, float],
    method: str,
) -> None:
    """A re-solve of a finished run: new targets, result and proposed version."""
    session.execute(
        update(CalibrationRun)
        .where(CalibrationRun.id == run_id)
        .values(
            result=result, produced_version_id=produced_version_id, targets=targets, method=method
        ),
        execution_options={"synchronize_session": False},
    )
    expire_cached(session, CalibrationRun, run_id)
