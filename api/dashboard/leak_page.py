"""Leak monitoring: per policy version and category, the answered requests whose text was
checked and the share that reads as a refusal after `[respond]`, with the latest examples."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.auth import ViewerDep
from api.dashboard.generation_pages import version_choices
from api.dashboard.render import page
from api.dashboard.series import RANGES
from api.deps import SessionDep
from db.repositories import generations as generation_repo
from db.repositories.stats import StatsQuery, leak_totals
from db.types import utcnow

router = APIRouter(prefix="/dashboard/leaks", include_in_schema=False)
EXAMPLES = 20


@router.get("", response_class=HTMLResponse)
def leaks_view(
    request: Request, viewer: ViewerDep, session: SessionDep, range: str = "24h"
) -> Response:
    tenant_id = viewer.require_tenant()
    range_key = range if range in RANGES else "24h"
    end = utcnow()
    start = end - RANGES[range_key]
    labels = {c.id: c.label for c in version_choices(session, tenant_id)}
    order = {version_id: i for i, version_id in enumerate(labels)}
    totals = sorted(
        leak_totals(session, StatsQuery(tenant_id, start, end)),
        key=lambda t: (order.get(t.policy_version_id, len(order)), t.category),
    )
    examples = generation_repo.list_generations(
        session=session, tenant_id=tenant_id, leak=True, limit=EXAMPLES
    )
    return page(
        request,
        "leaks.html",
        viewer,
        totals=totals,
        labels=labels,
        examples=examples,
        checks=sum(t.checks for t in totals),
        leaks=sum(t.leaks for t in totals),
        share=request.app.state.settings.leak_sample_share,
        range_key=range_key,
    )
