"""Calibration runs and items on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from db.actors import calibration_actor
from db.errors import CalibrationRunNotFound, PolicyNotFound
from db.repositories.calibrations import (
    NewCalibrationItem,
    NewCalibrationRun,
    add_items,
    create_run,
    get_run,
    list_items,
    list_runs,
    load_run,
    mark_run_cancelled,
    mark_run_failed,
    mark_run_running,
    store_result,
    store_summaries,
    update_progress,
)
from db.repositories.policies import NewVersion, PolicyRef, create_version
from tests.db.factories import make_policy, make_tenant, threshold_rules

pytestmark = pytest.mark.integration


def test_run_lifecycle_with_items_summaries_and_result(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    run = create_run(
        session=db_session,
        tenant_id=tenant.id,
        policy_id=policy.id,
        new=NewCalibrationRun({"safety": 0.9, "incomplete": 0.2}, "threshold", "labelled", 0.25),
    )
    assert (run.status, run.done, run.total) == ("queued", 0, 0)
    items = [NewCalibrationItem(f"prompt {i}", label="safety" if i % 2 else None) for i in range(6)]
    assert add_items(session=db_session, run_id=run.id, items=items) == 6
    add_items(
        session=db_session,
        run_id=run.id,
        items=[NewCalibrationItem([{"role": "user", "content": "hi"}], split="holdout")],
    )
    assert run.total == 7
    stored = list_items(session=db_session, run_id=run.id)
    assert [i.idx for i in stored] == list(range(7))
    assert stored[6].prompt == [{"role": "user", "content": "hi"}]
    assert [i.idx for i in list_items(session=db_session, run_id=run.id, split="holdout")] == [6]

    assert mark_run_running(session=db_session, run_id=run.id)
    assert not mark_run_running(session=db_session, run_id=run.id)
    store_summaries(
        session=db_session,
        run_id=run.id,
        summaries={i: {"s": [float(i)], "m": 0.0} for i in range(7)},
    )
    assert update_progress(session=db_session, run_id=run.id, done=7)
    assert list_items(session=db_session, run_id=run.id)[3].summary == {"s": [3.0], "m": 0.0}

    proposal = create_version(
        session=db_session,
        ref=PolicyRef(tenant.id, policy.id),
        new=NewVersion(threshold_rules(0.33), calibration_actor(run.id)),
        activate=False,
    )
    result = {"safety": {"threshold": 0.33, "rate": 0.9, "curve": [[0.1, 0.99]]}}
    assert store_result(
        session=db_session, run_id=run.id, result=result, produced_version_id=proposal.id
    )
    assert (run.status, run.result, run.produced_version_id) == ("succeeded", result, proposal.id)
    assert run.done == run.total == 7 and run.finished_at is not None
    assert not mark_run_failed(session=db_session, run_id=run.id, error="late")
    assert not update_progress(session=db_session, run_id=run.id, done=1)


def test_runs_are_tenant_scoped(db_session: Session) -> None:
    tenant_a, _ = make_tenant(db_session)
    tenant_b, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant_a)
    with pytest.raises(PolicyNotFound):
        create_run(
            session=db_session,
            tenant_id=tenant_b.id,
            policy_id=policy.id,
            new=NewCalibrationRun({}, "threshold", "traffic"),
        )
    run = create_run(
        session=db_session,
        tenant_id=tenant_a.id,
        policy_id=policy.id,
        new=NewCalibrationRun({"safety": 0.5}, "threshold", "traffic"),
    )
    with pytest.raises(CalibrationRunNotFound):
        get_run(session=db_session, tenant_id=tenant_b.id, run_id=run.id)
    assert list_runs(session=db_session, tenant_id=tenant_b.id) == []
    assert not mark_run_cancelled(session=db_session, run_id=run.id, tenant_id=tenant_b.id)
    assert mark_run_cancelled(session=db_session, run_id=run.id, tenant_id=tenant_a.id)
    assert load_run(session=db_session, run_id=run.id).status == "cancelled"
    assert [r.id for r in list_runs(session=db_session, tenant_id=tenant_a.id)] == [run.id]


def test_invalid_run_arguments_are_refused(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    with pytest.raises(ValueError, match="target_kind"):
        create_run(
            session=db_session,
            tenant_id=tenant.id,
            policy_id=policy.id,
            new=NewCalibrationRun({}, "threshold", "vibes"),
        )
    run = create_run(
        session=db_session,
        tenant_id=tenant.id,
        policy_id=policy.id,
        new=NewCalibrationRun({}, "threshold", "traffic"),
    )
    with pytest.raises(ValueError, match="split"):
        add_items(session=db_session, run_id=run.id, items=[NewCalibrationItem("p", split="x")])
