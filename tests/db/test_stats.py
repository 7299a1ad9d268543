"""Refusal statistics on PostgreSQL: upserts accumulate, histograms add, reads group."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.errors import InvalidStats
from db.models import HISTOGRAM_BINS, Policy, RefusalStat, Tenant
from db.repositories.stats import (
    StatIncrement,
    StatsQuery,
    category_totals,
    floor_to_bucket,
    increment_stats,
    leak_totals,
    read_buckets,
)
from db.session import create_session_factory, session_scope
from tests.db.factories import make_policy, make_tenant

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def one_hot(bin_index: int, count: int = 1) -> list[int]:
    histogram = [0] * HISTOGRAM_BINS
    histogram[bin_index] = count
    return histogram


def inc(
    tenant: Tenant,
    policy: Policy,
    category: str,
    bucket: datetime,
    *,
    requests: int = 0,
    refusals: int = 0,
    sum_p: float = 0.0,
    histogram: Sequence[int] = (),
) -> StatIncrement:
    """An increment for the policy's active version."""
    assert policy.active_version_id is not None
    return StatIncrement(
        tenant.id, policy.active_version_id, category, bucket, requests, refusals, sum_p, histogram
    )


def version_id(policy: Policy) -> uuid.UUID:
    assert policy.active_version_id is not None
    return policy.active_version_id


def test_floor_to_bucket_is_utc_minute_aligned() -> None:
    ts = datetime(2025, 1, 1, 13, 7, 59, 999, tzinfo=UTC)
    assert floor_to_bucket(ts) == datetime(2025, 1, 1, 13, 7, tzinfo=UTC)
    assert floor_to_bucket(ts, seconds=3600) == datetime(2025, 1, 1, 13, tzinfo=UTC)
    with pytest.raises(InvalidStats):
        floor_to_bucket(datetime(2025, 1, 1))


def test_increments_accumulate_into_one_row_per_key(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    first = [
        inc(tenant, policy, "safety", T0, requests=1, refusals=1, sum_p=0.9, histogram=one_hot(60)),
        inc(tenant, policy, "safety", T0, requests=1, refusals=0, sum_p=0.2, histogram=one_hot(20)),
        inc(tenant, policy, "humanizing", T0, requests=2, sum_p=0.1),
    ]
    assert increment_stats(session=db_session, increments=first) == 2
    second = [
        inc(
            tenant,
            policy,
            "safety",
            T0,
            requests=3,
            refusals=2,
            sum_p=1.5,
            histogram=one_hot(60, 2),
        )
    ]
    assert increment_stats(session=db_session, increments=second) == 1
    rows = db_session.scalars(select(RefusalStat).where(RefusalStat.tenant_id == tenant.id)).all()
    assert len(rows) == 2
    safety = next(r for r in rows if r.category == "safety")
    assert (safety.requests, safety.refusals) == (5, 3)
    assert safety.sum_p == pytest.approx(2.6)
    assert safety.histogram[60] == 3 and safety.histogram[20] == 1 and sum(safety.histogram) == 4
    humanizing = next(r for r in rows if r.category == "humanizing")
    assert humanizing.histogram == [0] * HISTOGRAM_BINS and humanizing.requests == 2


def test_concurrent_workers_never_lose_an_increment(pg_engine: Engine) -> None:
    """Four threads, each committing its own transactions on overlapping keys (in varying
    order): every increment lands, and no transaction deadlocks."""
    factory = create_session_factory(pg_engine)
    with session_scope(factory) as session:
        tenant, _ = make_tenant(session)
        policy = make_policy(session, tenant)
    categories = ["safety", "incomplete", "humanizing"]
    buckets = [T0 + timedelta(minutes=i) for i in range(3)]

    def work(seed: int) -> None:
        for step in range(15):
            order = categories[seed % 3 :] + categories[: seed % 3]
            batch = [
                inc(
                    tenant,
                    policy,
                    c,
                    buckets[(step + seed) % 3],
                    requests=1,
                    refusals=1,
                    sum_p=0.5,
                    histogram=one_hot(step % HISTOGRAM_BINS),
                )
                for c in order
            ]
            with session_scope(factory) as session:
                increment_stats(session=session, increments=batch)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(work, range(4)))
        with session_scope(factory) as session:
            totals = category_totals(session, StatsQuery(tenant.id, T0))
            rows = session.scalar(
                select(func.count())
                .select_from(RefusalStat)
                .where(RefusalStat.tenant_id == tenant.id)
            )
        assert rows == len(categories) * len(buckets)
        for category in categories:
            assert totals[category].requests == 4 * 15
            assert totals[category].sum_p == pytest.approx(30.0)
            assert sum(totals[category].histogram) == 4 * 15
    finally:
        with session_scope(factory) as session:
            session.delete(session.get(Tenant, tenant.id))


def test_bad_increments_are_refused(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    for bad in (
        inc(tenant, policy, "safety", T0, histogram=[1, 2, 3]),
        inc(tenant, policy, "safety", T0, requests=-1),
        inc(tenant, policy, "safety", datetime(2025, 1, 1)),
    ):
        with pytest.raises(InvalidStats):
            increment_stats(session=db_session, increments=[bad])
    assert increment_stats(session=db_session, increments=[]) == 0


def test_reads_group_by_bucket_and_category_over_versions(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    other_tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    kids = make_policy(db_session, tenant, "kids", is_default=False)
    foreign = make_policy(db_session, other_tenant)
    t1 = T0 + timedelta(minutes=1)
    increment_stats(
        session=db_session,
        increments=[
            inc(tenant, policy, "safety", T0, requests=10, refusals=5, histogram=one_hot(1, 10)),
            inc(tenant, kids, "safety", T0, requests=10, refusals=9, histogram=one_hot(2, 10)),
            inc(tenant, policy, "safety", t1, requests=4, refusals=1),
            inc(tenant, policy, "incomplete", t1, requests=4, refusals=0),
            inc(tenant, policy, "safety", T0 - timedelta(hours=1), requests=100),
            inc(other_tenant, foreign, "safety", T0, requests=1000),
        ],
    )
    buckets = read_buckets(db_session, StatsQuery(tenant.id, T0))
    assert [(b.bucket_start, b.category, b.requests) for b in buckets] == [
        (T0, "safety", 20),
        (t1, "incomplete", 4),
        (t1, "safety", 4),
    ]
    assert buckets[0].refusal_rate == pytest.approx(0.7)
    assert buckets[0].histogram[1] == 10 and buckets[0].histogram[2] == 10
    only_kids = read_buckets(
        db_session, StatsQuery(tenant.id, T0, end=t1, policy_version_ids=[version_id(kids)])
    )
    assert [(b.category, b.refusals) for b in only_kids] == [("safety", 9)]
    totals = category_totals(db_session, StatsQuery(tenant.id, T0, categories=["safety"]))
    assert set(totals) == {"safety"}
    assert (totals["safety"].requests, totals["safety"].refusals) == (24, 15)
    assert totals["safety"].bucket_start is None


def test_leak_checks_add_up_per_version_and_category(db_session: Session) -> None:
    tenant, _ = make_tenant(db_session)
    policy = make_policy(db_session, tenant)
    vid = version_id(policy)
    later = T0 + timedelta(minutes=1)
    increment_stats(
        session=db_session,
        increments=[
            StatIncrement(tenant.id, vid, "safety", T0, requests=1, leak_checks=1, leaks=1),
            StatIncrement(tenant.id, vid, "safety", later, requests=1, leak_checks=1),
            StatIncrement(tenant.id, vid, "humanizing", T0, requests=1, leak_checks=1),
            StatIncrement(tenant.id, vid, "incomplete", T0, requests=4),  # never checked
        ],
    )
    found = {t.category: t for t in leak_totals(db_session, StatsQuery(tenant.id, T0))}
    assert set(found) == {"safety", "humanizing"}
    assert (found["safety"].checks, found["safety"].leaks, found["safety"].rate) == (2, 1, 0.5)
    assert found["humanizing"].rate == 0.0
    totals = category_totals(db_session, StatsQuery(tenant.id, T0))
    assert (totals["safety"].leak_checks, totals["safety"].leak_rate) == (2, 0.5)
    assert totals["incomplete"].leak_rate is None
    with pytest.raises(InvalidStats):
        increment_stats(
            session=db_session,
            increments=[StatIncrement(tenant.id, vid, "safety", T0, leak_checks=1, leaks=2)],
        )
