"""Per category: refusal rate over time against the target, activation markers, threshold
history and the current score histogram with the threshold drawn on it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.auth import ViewerDep
from api.dashboard.charts import histogram_chart, rate_chart
from api.dashboard.render import error_page, page
from api.dashboard.series import BUCKETS, MAX_POINTS, RANGES, parse_range
from api.deps import SessionDep
from core.categories import CATEGORIES
from core.intervals import wilson_interval
from db.errors import NotFound
from db.repositories import policies as repo
from db.types import utcnow
from services.statistics import category_series

router = APIRouter(prefix="/dashboard/categories", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def categories_view(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    policy: str | None = None,
    range: str = "24h",
    bucket: int = 3600,
    category: str | None = None,
) -> Response:
    tenant_id = viewer.require_tenant()
    policies = repo.list_policies(session=session, tenant_id=tenant_id)
    if not policies:
        return page(request, "categories.html", viewer, policies=[], panels=[], selected=None)
    try:
        chosen = (
            repo.get_policy_by_name(session=session, tenant_id=tenant_id, name=policy)
            if policy
            else next((p for p in policies if p.is_default), policies[0])
        )
    except NotFound:
        return error_page(request, viewer, 404, "Policy not found", f"No policy named {policy!r}.")
    if bucket not in BUCKETS.values():
        bucket = 3600
    start, end, note = parse_range(range, bucket, utcnow())
    while (end - start).total_seconds() / bucket > MAX_POINTS:
        bucket = min(b for b in BUCKETS.values() if b > bucket)
    shown = (category,) if category in CATEGORIES else CATEGORIES
    series = category_series(
        session, chosen, start=start, end=end, bucket_seconds=bucket, categories=shown
    )
    mode = chosen.active_version.mode if chosen.active_version else "threshold"
    panels = [
        {
            "series": s,
            "interval": wilson_interval(s.totals.refusals, s.totals.requests),
            "rate_svg": rate_chart(
                s.points,
                start=start,
                end=end,
                targets=s.targets,
                markers=[(t[0], f"v{t[1]}") for t in s.thresholds],
            ),
            "hist_svg": histogram_chart(
                s.totals.histogram,
                threshold=s.threshold if mode == "threshold" and s.enabled else None,
            ),
        }
        for s in series.values()
    ]
    return page(
        request,
        "categories.html",
        viewer,
        policies=policies,
        selected=chosen,
        mode=mode,
        panels=panels,
        buckets=BUCKETS,
        range_key=range if range in RANGES else "24h",
        bucket=bucket,
        bucket_label=next(k for k, v in BUCKETS.items() if v == bucket),
        category=category if category in CATEGORIES else "",
        start=start,
        end=end,
        note=note,
    )
