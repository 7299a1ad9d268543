"""Data behind the per-category view: rate points per bucket, the target and threshold history
(from the policy's activations in the audit log) and the score histogram over the range."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.histogram import HISTOGRAM_BINS
from db.models import Policy, PolicyVersion
from db.repositories import audit
from db.repositories import policies as policy_repo
from db.repositories.stats import StatTotals, floor_to_bucket, read_buckets

RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
BUCKETS: dict[str, int] = {
    "1 min": 60,
    "5 min": 300,
    "15 min": 900,
    "1 hour": 3600,
    "6 hours": 21600,
    "1 day": 86400,
}
ACTIVATING_ACTIONS = ("policy.create", "policy.version.create", "policy.activate")
MAX_POINTS = 2000


@dataclass
class CategorySeries:
    """One category's chart data over [start, end)."""

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
        is_change = entry.action in ACTIVATING_ACTIONS and isinstance(version, int)
        if is_change and (not out or out[-1][1] != version):
            out.append((entry.created_at, version))
    return out


def _rule(version: PolicyVersion | None, category: str) -> dict[str, object]:
    if version is None:
        return {}
    return dict(version.rules.get("categories", {}).get(category, {}))


def category_series(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy: Policy,
    start: datetime,
    end: datetime,
    bucket_seconds: int,
    categories: tuple[str, ...] = CATEGORIES,
) -> dict[str, CategorySeries]:
    """Per category: merged buckets of every version of `policy`, the target as a step line, the
    threshold history, and the summed histogram."""
    versions = policy_repo.list_versions(session=session, tenant_id=tenant_id, policy_id=policy.id)
    by_number = {v.version: v for v in versions}
    history = activations(session=session, tenant_id=tenant_id, policy=policy)
    active = policy.active_version
    rows = read_buckets(
        session=session,
        tenant_id=tenant_id,
        start=floor_to_bucket(start, seconds=bucket_seconds),
        end=end,
        policy_version_ids=[v.id for v in versions],
        categories=list(categories),
    )
    out: dict[str, CategorySeries] = {}
    for category in categories:
        series = CategorySeries(category, StatTotals(category))
        rule = _rule(active, category)
        series.threshold = rule.get("threshold")  # type: ignore[assignment]
        series.target = rule.get("target_rate")  # type: ignore[assignment]
        series.enabled = bool(rule.get("enabled", True))
        for at, number in history:
            version_rule = _rule(by_number.get(number), category)
            series.targets.append((at, version_rule.get("target_rate")))  # type: ignore[arg-type]
            series.thresholds.append(
                (
                    at,
                    number,
                    float(version_rule.get("threshold", 0.5)),  # type: ignore[arg-type]
                    bool(version_rule.get("enabled", True)),
                )
            )
        out[category] = series
    merged: dict[tuple[str, datetime], StatTotals] = {}
    for row in rows:
        assert row.bucket_start is not None
        at = floor_to_bucket(row.bucket_start, seconds=bucket_seconds)
        merged.setdefault((row.category, at), StatTotals(row.category, at)).add(row)  # type: ignore[arg-type]
        out[row.category].totals.add(row)  # type: ignore[arg-type]
    for (category, at), totals in sorted(merged.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if totals.requests:
            out[category].points.append((at, totals.refusals / totals.requests, totals.requests))
    return out


def parse_range(
    range_key: str, bucket_seconds: int, now: datetime
) -> tuple[datetime, datetime, str]:
    """[start, end) for a range key; falls back to 24h and says so when the bucket would give
    more than `MAX_POINTS` points."""
    span = RANGES.get(range_key, RANGES["24h"])
    note = "" if range_key in RANGES else "Unknown range; showing the last 24 hours."
    if span.total_seconds() / bucket_seconds > MAX_POINTS:
        note = f"That bucket would draw more than {MAX_POINTS} points; pick a larger one."
    end = now.astimezone(UTC)
    return end - span, end, note


def empty_histogram() -> list[int]:
    return [0] * HISTOGRAM_BINS
