"""Per-category refusal statistics of the caller's tenant, read from `refusal_stats`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import SessionDep, TenantAdmin
from api.errors import ApiError
from core.categories import CATEGORIES
from db.repositories import policies as policy_repo
from db.repositories.stats import BUCKET_SECONDS, StatTotals, floor_to_bucket, read_buckets
from db.types import utcnow

router = APIRouter(prefix="/v1/stats", tags=["stats"])
MAX_POINTS = 10_000


def _totals_out(t: StatTotals) -> dict[str, Any]:
    return {
        "requests": t.requests,
        "refusals": t.refusals,
        "rate": t.refusal_rate,
        "mean_p": t.mean_p,
    }


@router.get("")
def get_stats(
    principal: TenantAdmin,
    session: SessionDep,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: Annotated[int, Query(ge=BUCKET_SECONDS, le=31 * 86400)] = 3600,
    policy: str | None = None,
    category: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    """Requests, refusals and rate per category over [start, end) in `bucket`-second buckets."""
    tenant_id = principal.require_tenant()
    for name, value in (("start", start), ("end", end)):  # before defaults derive from them
        if value is not None and value.tzinfo is None:
            raise ApiError(
                422, "validation_error", "timestamps need a time zone (e.g. Z)", field=name
            )
    end = end or utcnow()
    start = start or end - timedelta(days=1)
    if start >= end:
        raise ApiError(422, "validation_error", "start must be before end", field="start")
    if bucket % BUCKET_SECONDS:
        raise ApiError(
            422,
            "validation_error",
            f"bucket must be a multiple of {BUCKET_SECONDS} s",
            field="bucket",
        )
    if (end - start).total_seconds() / bucket > MAX_POINTS:
        raise ApiError(
            422, "validation_error", f"range holds more than {MAX_POINTS} buckets", field="bucket"
        )
    for name in category or []:
        if name not in CATEGORIES:
            raise ApiError(422, "validation_error", f"unknown category {name!r}", field="category")
    version_ids = None
    if policy is not None:
        found = policy_repo.get_policy_by_name(session=session, tenant_id=tenant_id, name=policy)
        version_ids = [
            v.id
            for v in policy_repo.list_versions(
                session=session, tenant_id=tenant_id, policy_id=found.id
            )
        ]
    rows = read_buckets(
        session=session,
        tenant_id=tenant_id,
        start=start,
        end=end,
        policy_version_ids=version_ids,
        categories=category,
    )
    per_category: dict[str, dict[datetime, StatTotals]] = {c: {} for c in category or CATEGORIES}
    totals = {c: StatTotals(c) for c in per_category}
    for row in rows:
        assert row.bucket_start is not None
        at = floor_to_bucket(row.bucket_start, seconds=bucket)
        merged = per_category[row.category].setdefault(at, StatTotals(row.category, at))
        for target in (merged, totals[row.category]):
            target.requests += row.requests
            target.refusals += row.refusals
            target.sum_p += row.sum_p
    return {
        "start": start,
        "end": end,
        "bucket_seconds": bucket,
        "policy": policy,
        "categories": {
            c: {
                **_totals_out(totals[c]),
                "buckets": [
                    {"start": at, **_totals_out(t)} for at, t in sorted(per_category[c].items())
                ],
            }
            for c in per_category
        },
    }
