"""The statistics read model: per-category refusal statistics re-bucketed for display, used by
both `GET /v1/stats` and the dashboard's per-category view.

`refusal_stats` rows are one minute long; a reader asks for longer buckets, summed over the
policy versions it selects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.policy import CategoryRule
from db.models import Policy, PolicyVersion
from db.repositories import audit
from db.repositories import policies as policy_repo
from db.repositories.stats import StatsQuery, StatTotals, floor_to_bucket, read_buckets

ACTIVATING_ACTIONS = (
    "policy.create",
    "policy.version.create",
    "policy.activate",
    "policy.shadow.promote",
)


@dataclass
class CategoryStats:
    """One category over a range: its totals and its non-empty buckets, oldest first."""

    category: str
    totals: StatTotals
    buckets: list[StatTotals] = field(default_factory=list)


def rebucket(
    rows: Iterable[StatTotals], *, categories: Sequence[str], bucket_seconds: int
) -> dict[str, CategoryStats]:
    """Sum minute rows into `bucket_seconds` buckets and into one total, per category."""
    merged: dict[tuple[str, datetime], StatTotals] = {}
    out = {c: CategoryStats(c, StatTotals(c)) for c in categories}
    for row in rows:
        assert row.bucket_start is not None
        at = floor_to_bucket(row.bucket_start, seconds=bucket_seconds)
        merged.setdefault((row.category, at), StatTotals(row.category, at)).add(row)
        out[row.category].totals.add(row)
    for (category, _), totals in sorted(merged.items()):
        out[category].buckets.append(totals)
    return out


def policy_version_ids(
    *, session: Session, tenant_id: uuid.UUID, policy_name: str
) -> list[uuid.UUID]:
    """Every version of the named policy (`PolicyNotFound` otherwise)."""
    found = policy_repo.get_policy_by_name(session=session, tenant_id=tenant_id, name=policy_name)
    versions = policy_repo.list_versions(session=session, tenant_id=tenant_id, policy_id=found.id)
    return [v.id for v in versions]


def category_stats(
    session: Session, query: StatsQuery, *, bucket_seconds: int
) -> dict[str, CategoryStats]:
    """Per category the query selects (every one when it names none): totals and
    `bucket_seconds` buckets."""
    categories = CATEGORIES if query.categories is None else query.categories
    rows = read_buckets(session, query)
    return rebucket(rows, categories=categories, bucket_seconds=bucket_seconds)


@dataclass
class CategorySeries:
    """One category's chart data over [start, end): rate points, the target as a step line,
    the threshold history, and the current rule's figures."""

    category: str
    totals: StatTotals
    points: list[tuple[datetime, float, int]] = field(default_factory=list)
    targets: list[tuple[datetime, float | None]] = field(default_factory=list)
    thresholds: list[tuple[datetime, int, float, bool]] = field(default_factory=list)
    threshold: float | None = None
    target: float | None = None
    enabled: bool = True


def activations(
    *, session: Session, tenant_id: uuid.UUID, policy: Policy
) -> list[tuple[datetime, int]]:
    """(when, version number) each time the policy's active version changed, oldest first."""
    entries = audit.list_entries(
        session=session, tenant_id=tenant_id, entity="policy", entity_id=policy.id, limit=1000
    )
    out: list[tuple[datetime, int]] = []
    for entry in reversed(entries):
        after = entry.after or {}
        version = after.get("active_version")
        if not isinstance(version, int) or entry.action not in ACTIVATING_ACTIONS:
            continue
        if not out or out[-1][1] != version:
            out.append((entry.created_at, version))
    return out


def _rule(version: PolicyVersion | None, category: str) -> CategoryRule:
    """The version's rule of `category`; the default rule when there is no version."""
    return CategoryRule() if version is None else version.rules.rule(category)


def category_series(
    session: Session,
    policy: Policy,
    *,
    start: datetime,
    end: datetime,
    bucket_seconds: int,
    categories: tuple[str, ...] = CATEGORIES,
) -> dict[str, CategorySeries]:
    """Per category: merged buckets of every version of `policy` (read within its tenant), the
    target as a step line, the threshold history, and the summed histogram."""
    tenant_id = policy.tenant_id
    versions = policy_repo.list_versions(session=session, tenant_id=tenant_id, policy_id=policy.id)
    by_number = {v.version: v for v in versions}
    history = activations(session=session, tenant_id=tenant_id, policy=policy)
    since = floor_to_bucket(start, seconds=bucket_seconds)
    query = StatsQuery(tenant_id, since, end, [v.id for v in versions], categories)
    stats = category_stats(session, query, bucket_seconds=bucket_seconds)
    out: dict[str, CategorySeries] = {}
    for category in categories:
        series = CategorySeries(category, stats[category].totals)
        active = policy.active_version
        rule = _rule(active, category)
        series.threshold = None if active is None else rule.threshold
        series.target = rule.target_rate
        series.enabled = rule.enabled
        for at, number in history:
            version_rule = _rule(by_number.get(number), category)
            series.targets.append((at, version_rule.target_rate))
            series.thresholds.append((at, number, version_rule.threshold, version_rule.enabled))
        series.points = [
            (b.bucket_start, b.refusals / b.requests, b.requests)
            for b in stats[category].buckets
            if b.requests and b.bucket_start is not None
        ]
        out[category] = series
    return out
