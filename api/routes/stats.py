"""Per-category refusal statistics of the caller's tenant, read from `refusal_stats`."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from api.deps import SessionDep, TenantAdmin
from api.errors import ApiError
from api.openapi import AUTHENTICATED, errors
from core.categories import CATEGORIES
from core.intervals import wilson_interval
from db.errors import PolicyNotFound
from db.repositories.stats import BUCKET_SECONDS, StatsQuery, StatTotals
from db.types import utcnow
from services.statistics import CategoryStats, category_stats, policy_version_ids

router = APIRouter(prefix="/v1/stats", tags=["stats"], responses=errors(*AUTHENTICATED))
MAX_POINTS = 10_000
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
EARLIEST = datetime.min.replace(tzinfo=UTC)


def _rfc3339_only(value: object) -> object:
    """Refuse what pydantic would otherwise read as Unix time (`0.5`) or a bare date."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            "expected an RFC 3339 date-time with a time zone, e.g. 2025-01-31T12:00:00Z"
        )
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59-23:00 is in year 10000 in UTC
        raise ValueError("date-time outside the years 1 to 9999 in UTC") from None


#: An RFC 3339 date-time with its time zone, nothing else; read as UTC.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_in_utc)]


def day_before(end: datetime) -> datetime:
    try:
        return end - timedelta(days=1)
    except OverflowError:  # `end` in year 1: the range starts at the earliest time there is
        return EARLIEST


def _totals_out(t: StatTotals) -> dict[str, Any]:
    interval = wilson_interval(t.refusals, t.requests)
    return {
        "requests": t.requests,
        "refusals": t.refusals,
        "rate": t.refusal_rate,
        "interval": None if interval is None else {"low": interval.low, "high": interval.high},
        "mean_p": t.mean_p,
        "leak_checks": t.leak_checks,
        "leaks": t.leaks,
        "leak_rate": t.leak_rate,
    }


def _series_out(s: CategoryStats) -> dict[str, Any]:
    return {
        **_totals_out(s.totals),
        "buckets": [{"start": b.bucket_start, **_totals_out(b)} for b in s.buckets],
    }


@router.get("", responses=errors(404, 422))
def get_stats(
    principal: TenantAdmin,
    session: SessionDep,
    start: Timestamp | None = None,
    end: Timestamp | None = None,
    bucket: Annotated[int, Query(ge=BUCKET_SECONDS, le=31 * 86400)] = 3600,
    policy: str | None = None,
    category: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    """Requests, refusals and rate (with its 95% Wilson interval) per category over [start, end)
    in `bucket`-second buckets; `shadow` holds the same for the decisions of shadow versions
    (on the same requests, never enforced)."""
    tenant_id = principal.require_tenant()
    end = end or utcnow()
    if start is None and end == EARLIEST:
        raise ApiError(422, "validation_error", "no time before end to read", field="end")
    start = start or day_before(end)
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
        try:
            version_ids = policy_version_ids(
                session=session, tenant_id=tenant_id, policy_name=policy
            )
        except PolicyNotFound as exc:
            raise ApiError(404, "not_found", str(exc), field="policy") from None
    query = StatsQuery(tenant_id, start, end, version_ids, category or CATEGORIES)
    live = category_stats(session, query, bucket_seconds=bucket)
    shadow = category_stats(session, replace(query, shadow=True), bucket_seconds=bucket)
    return {
        "start": start,
        "end": end,
        "bucket_seconds": bucket,
        "policy": policy,
        "categories": {
            c: {**_series_out(s), "shadow": _series_out(shadow[c])} for c, s in live.items()
        },
    }
