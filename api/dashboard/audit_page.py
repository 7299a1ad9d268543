"""The audit log of the viewed tenant, filterable by action, entity and date range."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.dashboard.auth import ViewerDep
from api.dashboard.render import page
from api.deps import SessionDep
from db.repositories import audit

router = APIRouter(prefix="/dashboard/audit", include_in_schema=False)
PAGE_SIZE = 200
#: Read this many rows at most when an end date filters in Python (the repository has `since`).
SCAN_LIMIT = 2000
KNOWN_ACTIONS = (
    "policy.create",
    "policy.version.create",
    "policy.activate",
    "policy.default",
    "api_key.create",
    "api_key.revoke",
    "calibration.create",
    "tenant.create",
    "tenant.update",
)
KNOWN_ENTITIES = ("policy", "api_key", "tenant", "calibration_run")


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("", response_class=HTMLResponse)
def audit_view(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    action: str = "",
    entity: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    tenant_id = viewer.require_tenant()
    day_from, day_to = _day(since), _day(until)
    errors = [
        f"{name} must be a date (YYYY-MM-DD)"
        for name, raw, parsed in (("From", since, day_from), ("To", until, day_to))
        if raw and parsed is None
    ]
    start = datetime.combine(day_from, datetime.min.time(), UTC) if day_from else None
    end = datetime.combine(day_to, datetime.min.time(), UTC) + timedelta(days=1) if day_to else None
    entries = audit.list_entries(
        session=session,
        tenant_id=tenant_id,
        action=action or None,
        entity=entity or None,
        since=start,
        limit=SCAN_LIMIT if end else PAGE_SIZE,
    )
    if end is not None:
        entries = [e for e in entries if e.created_at < end][:PAGE_SIZE]
    return page(
        request,
        "audit.html",
        viewer,
        entries=entries,
        action=action,
        entity=entity,
        since=since,
        until=until,
        actions=KNOWN_ACTIONS,
        entities=KNOWN_ENTITIES,
        errors=errors,
        page_size=PAGE_SIZE,
    )
