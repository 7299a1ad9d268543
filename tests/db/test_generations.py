"""Generations on PostgreSQL: tenant scoping and idempotent state transitions."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.errors import GenerationNotFound, NoActiveVersion, PolicyNotFound
from db.models import Generation, Policy, RefusalStat, Tenant
from db.repositories.generation_insert import create_generation_under_policy
from db.repositories.generation_json import (
    generation_from_json,
    generation_from_row,
    generation_to_row,
)
from db.repositories.generations import (
    Succeeded,
    claim_generation,
    claim_generations,
    get_generation,
    list_generations,
    load_generations,
    mark_cancelled,
    mark_failed,
    mark_many_succeeded,
    mark_running,
    mark_succeeded,
)
from db.repositories.policies import get_default_policy
from db.repositories.stats import StatIncrement, floor_to_bucket, stat_rows
from db.types import utcnow
from tests.db.factories import make_generation, make_policy, make_tenant

pytestmark = pytest.mark.integration

RESULT = {
    "output": "[safety] I can't help with that.",
    "refused": True,
    "refusal_category": "safety",
    "probabilities": {"safety": 0.91, "incomplete": 0.01},
    "summary": {"s": [1.0, 2.0], "m": 0.5, "L": {"1.0": 3.2}},
    "prompt_tokens": 12,
    "completion_tokens": 8,
}


TenantPolicy = tuple[Tenant, Policy]


@pytest.fixture
def tenant_policy(db_session: Session) -> TenantPolicy:
    tenant, _ = make_tenant(db_session)
    return tenant, make_policy(db_session, tenant)


def test_new_generation_is_queued_with_its_request(
    db_session: Session, tenant_policy: TenantPolicy
) -> None:
    tenant, policy = tenant_policy
    generation = make_generation(db_session, tenant, policy)
    assert generation.status == "queued"
    assert generation.policy_version_id == policy.active_version_id
    assert generation.messages == [{"role": "user", "content": "hello"}]
    assert generation.created_at.tzinfo is not None
    assert get_generation(session=db_session, tenant_id=tenant.id, generation_id=generation.id)


def test_tenant_b_cannot_read_or_cancel_tenant_a_generation(
    db_session: Session,
    tenant_policy: TenantPolicy,
) -> None:
    tenant_a, policy = tenant_policy
    tenant_b, _ = make_tenant(db_session)
    generation = make_generation(db_session, tenant_a, policy)
    with pytest.raises(GenerationNotFound):
        get_generation(session=db_session, tenant_id=tenant_b.id, generation_id=generation.id)
    assert list_generations(session=db_session, tenant_id=tenant_b.id) == []
    assert not mark_cancelled(
        session=db_session, generation_id=generation.id, tenant_id=tenant_b.id
    )
    assert generation.status == "queued"
    assert [g.id for g in list_generations(session=db_session, tenant_id=tenant_a.id)] == [
        generation.id
    ]


def test_success_is_recorded_once_and_redelivery_is_a_no_op(
    db_session: Session,
    tenant_policy: TenantPolicy,
) -> None:
    tenant, policy = tenant_policy
    generation = make_generation(db_session, tenant, policy)
    assert mark_running(session=db_session, generation_id=generation.id)
    assert generation.status == "running" and generation.started_at is not None
    assert not mark_running(session=db_session, generation_id=generation.id)
    assert mark_succeeded(session=db_session, generation_id=generation.id, **RESULT)
    assert generation.status == "succeeded"
    assert generation.refusal_category == "safety"
    assert generation.probabilities == RESULT["probabilities"]
    assert generation.finished_at is not None
    # A redelivered task: nothing moves, nothing is overwritten.
    assert not mark_running(session=db_session, generation_id=generation.id)
    changed = dict(RESULT, output="different", refused=False, refusal_category=None)
    assert not mark_succeeded(session=db_session, generation_id=generation.id, **changed)
    assert not mark_failed(session=db_session, generation_id=generation.id, error="late")
    assert not mark_cancelled(session=db_session, generation_id=generation.id)
    db_session.expire_all()
    stored = get_generation(session=db_session, tenant_id=tenant.id, generation_id=generation.id)
    assert (stored.status, stored.output, stored.error) == ("succeeded", RESULT["output"], None)


def test_a_claim_takes_a_queued_or_running_row_once_and_never_a_final_one(
    db_session: Session, tenant_policy: TenantPolicy
) -> None:
    tenant, policy = tenant_policy
    generation = make_generation(db_session, tenant, policy)
    claimed = claim_generation(session=db_session, generation_id=generation.id)
    assert claimed is not None and claimed.id == generation.id
    assert claimed.status == "running" and claimed.started_at is not None
    assert claimed.messages == [{"role": "user", "content": "hello"}]
    first_start = claimed.started_at
    # A worker killed after its claim: the redelivered task claims the running row again and
    # keeps the first start.
    again = claim_generation(session=db_session, generation_id=generation.id)
    assert again is not None and again.started_at == first_start
    assert mark_succeeded(session=db_session, generation_id=generation.id, **RESULT)
    assert claim_generation(session=db_session, generation_id=generation.id) is None
    cancelled = make_generation(db_session, tenant, policy)
    assert mark_cancelled(session=db_session, generation_id=cancelled.id, tenant_id=tenant.id)
    assert claim_generation(session=db_session, generation_id=cancelled.id) is None
    assert claim_generation(session=db_session, generation_id=uuid.uuid4()) is None

    # Several at once (a batch message): the ones still to do, each once, in one statement.
    queued = [make_generation(db_session, tenant, policy) for _ in range(3)]
    asked = [queued[0].id, generation.id, queued[1].id, cancelled.id, uuid.uuid4(), queued[2].id]
    taken = claim_generations(session=db_session, generation_ids=asked)
    assert sorted(r.id for r in taken) == sorted(r.id for r in queued)
    assert {r.status for r in taken} == {"running"}
    assert claim_generations(session=db_session, generation_ids=[]) == []


def test_a_batch_of_results_moves_each_unfinished_row_once_in_one_statement(
    db_session: Session, tenant_policy: TenantPolicy
) -> None:
    tenant, policy = tenant_policy
    queued, running, final = (make_generation(db_session, tenant, policy) for _ in range(3))
    assert mark_running(session=db_session, generation_id=running.id)
    assert mark_failed(session=db_session, generation_id=final.id, error="earlier")
    results = [
        Succeeded(generation_id=queued.id, **RESULT),
        Succeeded(generation_id=running.id, **dict(RESULT, refused=False, refusal_category=None)),
        Succeeded(generation_id=queued.id, **dict(RESULT, output="a redelivered duplicate")),
        Succeeded(generation_id=final.id, **RESULT),
    ]
    moved = mark_many_succeeded(session=db_session, rows=results)
    assert set(moved) == {queued.id, running.id}
    db_session.expire_all()
    assert (queued.status, queued.output, queued.summary) == (
        "succeeded",
        RESULT["output"],
        RESULT["summary"],
    )
    assert queued.finished_at is not None and queued.probabilities == RESULT["probabilities"]
    assert (running.status, running.refused, running.refusal_category) == ("succeeded", False, None)
    assert (final.status, final.error, final.output) == ("failed", "earlier", None)
    assert mark_many_succeeded(session=db_session, rows=results) == {}


def test_results_and_their_statistics_go_in_one_statement_only_when_every_row_moves(
    db_session: Session, tenant_policy: TenantPolicy
) -> None:
    tenant, policy = tenant_policy
    assert policy.active_version_id is not None
    bucket = floor_to_bucket(utcnow())

    def requests_counted() -> int:
        return int(
            db_session.scalar(
                select(func.coalesce(func.sum(RefusalStat.requests), 0)).where(
                    RefusalStat.tenant_id == tenant.id
                )
            )
        )

    def stats_of(*rows: Generation) -> list[dict[str, object]]:
        one = StatIncrement(tenant.id, policy.active_version_id, "safety", bucket, requests=1)
        return stat_rows([one for _ in rows])

    a, b, c = (make_generation(db_session, tenant, policy) for _ in range(3))
    both = [Succeeded(generation_id=a.id, **RESULT), Succeeded(generation_id=b.id, **RESULT)]
    moved = mark_many_succeeded(session=db_session, rows=both, stats=stats_of(a, b))
    assert set(moved) == {a.id, b.id} and requests_counted() == 2

    # b is final already (a redelivery): nothing is counted, the caller counts what moved.
    again = [Succeeded(generation_id=c.id, **RESULT), Succeeded(generation_id=b.id, **RESULT)]
    moved = mark_many_succeeded(session=db_session, rows=again, stats=stats_of(c, b))
    assert set(moved) == {c.id} and requests_counted() == 2
    db_session.expire_all()
    assert c.status == "succeeded"


def test_a_row_as_json_reads_back_as_the_row(
    db_session: Session, tenant_policy: TenantPolicy
) -> None:
    tenant, policy = tenant_policy
    row = make_generation(db_session, tenant, policy)
    again = generation_from_row(json.loads(json.dumps(generation_to_row(row))))
    for column in Generation.__table__.columns:
        if column.computed is None:
            assert getattr(again, column.key) == getattr(row, column.key), column.key


def test_queued_rows_can_fail_or_be_cancelled_directly(
    db_session: Session,
    tenant_policy: TenantPolicy,
) -> None:
    tenant, policy = tenant_policy
    failed = make_generation(db_session, tenant, policy)
    cancelled = make_generation(db_session, tenant, policy)
    assert mark_failed(session=db_session, generation_id=failed.id, error="CUDA OOM")
    assert mark_cancelled(session=db_session, generation_id=cancelled.id, tenant_id=tenant.id)
    assert (failed.status, failed.error) == ("failed", "CUDA OOM")
    assert cancelled.status == "cancelled"
    assert not mark_running(session=db_session, generation_id=cancelled.id)
    assert not mark_succeeded(session=db_session, generation_id=cancelled.id, **RESULT)
    statuses = {
        g.id: g.status
        for g in load_generations(session=db_session, generation_ids=[failed.id, cancelled.id])
    }
    assert statuses == {failed.id: "failed", cancelled.id: "cancelled"}


def test_unset_json_results_are_sql_null(db_session: Session, tenant_policy: TenantPolicy) -> None:
    tenant, policy = tenant_policy
    generation = make_generation(db_session, tenant, policy)
    result = dict(RESULT, probabilities=None, summary=None)
    assert mark_succeeded(session=db_session, generation_id=generation.id, **result)
    nulls = db_session.execute(
        text("SELECT probabilities IS NULL, summary IS NULL FROM generations WHERE id = :id"),
        {"id": generation.id},
    ).one()
    assert tuple(nulls) == (True, True)


def test_listing_pages_newest_first(db_session: Session, tenant_policy: TenantPolicy) -> None:
    tenant, policy = tenant_policy
    rows = [make_generation(db_session, tenant, policy) for _ in range(5)]
    page = list_generations(session=db_session, tenant_id=tenant.id, limit=2)
    assert [g.id for g in page] == [rows[4].id, rows[3].id]
    older = list_generations(
        session=db_session, tenant_id=tenant.id, limit=10, before=page[-1].created_at
    )
    assert [g.id for g in older] == [rows[2].id, rows[1].id, rows[0].id]
    mark_failed(session=db_session, generation_id=rows[0].id, error="x")
    failed = list_generations(session=db_session, tenant_id=tenant.id, status="failed")
    assert [g.id for g in failed] == [rows[0].id]


def test_a_succeeded_row_comes_back_as_written_and_reads_back_as_the_row(
    db_session: Session, tenant_policy: TenantPolicy
) -> None:
    """What the worker publishes for waiters (the row's JSON as written) reads back as the row."""
    tenant, policy = tenant_policy
    generation = make_generation(db_session, tenant, policy)
    mark_running(session=db_session, generation_id=generation.id)
    written = mark_many_succeeded(
        session=db_session, rows=[Succeeded(generation_id=generation.id, **RESULT)]
    )
    from_json = generation_from_json(written[generation.id])
    db_session.expire_all()
    read = db_session.get(Generation, generation.id)
    assert read is not None and read.status == "succeeded" and read.finished_at is not None
    for column in Generation.__table__.columns:
        if column.computed is None:
            assert getattr(from_json, column.key) == getattr(read, column.key), column.key


def test_a_generation_under_a_policy_takes_its_active_and_shadow_versions_in_one_statement(
    db_session: Session,
) -> None:
    tenant_a, _ = make_tenant(db_session)
    tenant_b, _ = make_tenant(db_session)
    named = make_policy(db_session, tenant_a, "kids-app", is_default=False)
    shadow = make_policy(db_session, tenant_a, "candidate", is_default=False)
    named.shadow_version_id = shadow.active_version_id
    db_session.flush()
    default = get_default_policy(session=db_session, tenant_id=tenant_a.id)

    def under(tenant: Tenant, name: str | None) -> Generation:
        return create_generation_under_policy(
            session=db_session,
            tenant_id=tenant.id,
            policy_name=name,
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            params={"max_tokens": 8},
        )

    by_name = under(tenant_a, "kids-app")
    assert (by_name.policy_version_id, by_name.shadow_version_id) == (
        named.active_version_id,
        shadow.active_version_id,
    )
    assert by_name.status == "queued" and by_name.tenant_id == tenant_a.id
    assert under(tenant_a, None).policy_version_id == default.active_version_id
    with pytest.raises(PolicyNotFound):  # another tenant's policy name is unknown here
        under(tenant_b, "kids-app")
    named.active_version_id = None
    db_session.flush()
    with pytest.raises(NoActiveVersion):
        under(tenant_a, "kids-app")
    count = db_session.scalar(
        select(func.count())
        .select_from(Generation)
        .where(Generation.tenant_id.in_([tenant_a.id, tenant_b.id]))
    )
    assert count == 2  # the refused ones wrote nothing


def test_a_row_read_from_json_is_readable_in_a_process_that_made_no_row_before() -> None:
    """`generation_from_row` makes its rows without the constructor (which is what configures
    the mappers): a worker's first carried row must still read as a row."""
    code = (
        "import uuid\n"
        "from db.repositories.generation_json import generation_from_row\n"
        "row = generation_from_row({'id': str(uuid.UUID(int=1)), 'status': 'queued'})\n"
        "print(row.id, row.status, row.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(uuid.UUID(int=1)), "queued", "None"]
