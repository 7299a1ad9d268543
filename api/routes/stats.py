"""Per-category refusal statistics of the caller's tenant, read from `refusal_stats`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import SessionDep, TenantAdmin
from api.errors import ApiError
from core.categories import CATEGORIES
from db.repositories.stats import BUCKET_SECONDS, StatTotals
from db.types import utcnow
from services.statistics import category_stats, policy_version_ids

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
    version_ids = (
        None
        if policy is None
        else policy_version_ids(session=session, tenant_id=tenant_id, policy_name=policy)
    )
    stats = category_stats(
        session=session,
        tenant_id=tenant_id,
        start=start,
        end=end,
        bucket_seconds=bucket,
        policy_version_ids=version_ids,
        categories=category or CATEGORIES,
    )
    return {
        "start": start,
        "end": end,
        "bucket_seconds": bucket,
        "policy": policy,
        "categories": {
            c: {
                **_totals_out(s.totals),
                "buckets": [{"start": b.bucket_start, **_totals_out(b)} for b in s.buckets],
            }
            for c, s in stats.items()
        },
    }
