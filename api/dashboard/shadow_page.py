"""Shadow against live per category: what a policy's shadow version would have refused on the
same requests, beside what was served (read-only; set or promote a shadow through the API)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.auth import ViewerDep
from api.dashboard.render import error_page, page
from api.dashboard.series import RANGES, parse_range
from api.deps import SessionDep
from db.errors import NotFound
from db.repositories import policies as repo
from db.types import utcnow
from services.shadow_comparison import shadow_against_live

router = APIRouter(prefix="/dashboard/shadow", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def shadow_view(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    policy: str | None = None,
    range: str = "24h",
) -> Response:
    tenant_id = viewer.require_tenant()
    policies = repo.list_policies(session=session, tenant_id=tenant_id)
    if not policies:
        return page(request, "shadow.html", viewer, policies=[], rows=[], selected=None)
    try:
        chosen = (
            repo.get_policy_by_name(session=session, tenant_id=tenant_id, name=policy)
            if policy
            else next((p for p in policies if p.shadow_version_id), policies[0])
        )
    except NotFound:
        return error_page(request, viewer, 404, "Policy not found", f"No policy named {policy!r}.")
    start, end, note = parse_range(range, 3600, utcnow())
    rows = shadow_against_live(
        session=session, tenant_id=tenant_id, policy=chosen, start=start, end=end
    )
    return page(
        request,
        "shadow.html",
        viewer,
        policies=policies,
        selected=chosen,
        rows=rows,
        ranges=list(RANGES),
        range_key=range if range in RANGES else "24h",
        start=start,
        end=end,
        note=note,
    )
