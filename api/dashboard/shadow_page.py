"""A policy's shadow version against its live one, per category, on the same requests; promote
the shadow to active in one step, or stop deciding it (both CSRF-protected and audited).

Requests queued while a shadow is set carry it and are decided by both versions, so both rates
are read from the time the shadow version was made: the live figure then covers (about) the
same requests as the shadow one, and the page shows both counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from api.dashboard.auth import TenantWriteDep, ViewerDep
from api.dashboard.render import done, error_page, page, policy_path
from api.dashboard.series import RANGES
from api.deps import SessionDep
from core.categories import CATEGORIES
from core.intervals import Interval, wilson_interval
from db.errors import NoShadowVersion, NotFound, StaleVersion
from db.models import Policy, PolicyVersion
from db.repositories import policies as repo
from db.repositories import shadow as shadow_repo
from db.repositories.stats import StatsQuery, StatTotals, floor_to_bucket
from db.types import utcnow
from services.statistics import category_stats

router = APIRouter(prefix="/dashboard/policies", include_in_schema=False)


@dataclass(frozen=True)
class Side:
    """One version's figures for a category: requests, refusals, rate and its 95% interval."""

    requests: int
    refusals: int
    rate: float | None
    interval: Interval | None

    @staticmethod
    def of(totals: StatTotals) -> Side:
        interval = wilson_interval(totals.refusals, totals.requests)
        return Side(totals.requests, totals.refusals, totals.refusal_rate, interval)


@dataclass(frozen=True)
class Comparison:
    """A policy's shadow version against its live (active) one, per category, in [start, end)."""

    shadow: PolicyVersion
    active: PolicyVersion
    rows: list[tuple[str, Side, Side]]
    start: datetime
    end: datetime


def compare(session: Session, policy: Policy, span: timedelta) -> Comparison | None:
    """The last `span` of both versions' figures, at most since the shadow was set; None without
    a shadow (or an active) version."""
    shadow, active = policy.shadow_version, policy.active_version
    if shadow is None or active is None:
        return None
    end = utcnow()
    # From the minute bucket the shadow was set in (statistics are kept per minute).
    start = floor_to_bucket(max(end - span, shadow.created_at))
    versions = repo.list_versions(session=session, tenant_id=policy.tenant_id, policy_id=policy.id)
    live_query = StatsQuery(policy.tenant_id, start, end, [v.id for v in versions], CATEGORIES)
    live = category_stats(session, live_query, bucket_seconds=3600)
    shadow_query = replace(live_query, policy_version_ids=[shadow.id], shadow=True)
    decided = category_stats(session, shadow_query, bucket_seconds=3600)
    rows = [(c, Side.of(live[c].totals), Side.of(decided[c].totals)) for c in CATEGORIES]
    return Comparison(shadow, active, rows, start, end)


@router.get("/{name}/shadow", response_class=HTMLResponse)
def shadow_view(
    request: Request, name: str, viewer: ViewerDep, session: SessionDep, range: str = "24h"
) -> Response:
    tenant_id = viewer.require_tenant()
    try:
        policy = repo.get_policy_by_name(session=session, tenant_id=tenant_id, name=name)
    except NotFound:
        return error_page(request, viewer, 404, "Policy not found", f"No policy named {name!r}.")
    range_key = range if range in RANGES else "24h"
    return page(
        request,
        "shadow.html",
        viewer,
        nav="policies",
        policy=policy,
        comparison=compare(session, policy, RANGES[range_key]),
        range_key=range_key,
    )


@router.post("/{name}/shadow/promote")
def promote(
    request: Request,
    name: str,
    write: TenantWriteDep,
    session: SessionDep,
    expected_version: Annotated[int | None, Form()] = None,
) -> Response:
    """The shadow version becomes the active one, and the policy has no shadow any more."""
    try:
        policy = repo.get_policy_by_name(session=session, tenant_id=write.tenant_id, name=name)
        policy = shadow_repo.promote_shadow(
            session=session,
            ref=repo.PolicyRef(write.tenant_id, policy.id),
            change=repo.Change(write.actor, "shadow promoted from the dashboard", expected_version),
        )
    except NotFound as exc:
        session.rollback()
        return error_page(request, write.viewer, 404, "Policy not found", str(exc))
    except (NoShadowVersion, StaleVersion) as exc:
        session.rollback()
        return error_page(request, write.viewer, 409, "Cannot promote the shadow", str(exc))
    session.commit()
    version = policy.active_version.version if policy.active_version else "?"
    return done(policy_path(name), f"Shadow promoted: v{version} is now active")


@router.post("/{name}/shadow/clear")
def clear(request: Request, name: str, write: TenantWriteDep, session: SessionDep) -> Response:
    """Stop deciding the shadow version (its version and statistics stay)."""
    try:
        policy = repo.get_policy_by_name(session=session, tenant_id=write.tenant_id, name=name)
        ref = repo.PolicyRef(write.tenant_id, policy.id)
        shadow_repo.clear_shadow(session=session, ref=ref, actor=write.actor)
    except NotFound as exc:
        session.rollback()
        return error_page(request, write.viewer, 404, "Policy not found", str(exc))
    session.commit()
    return done(policy_path(name), "The shadow version is no longer decided")
