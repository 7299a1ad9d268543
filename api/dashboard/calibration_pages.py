"""Calibration runs: list, live progress, per-category rate curves with target and chosen point,
TPR/FPR where labels exist, and applying the proposed policy version."""

from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from api.dashboard.auth import TenantWriteDep, ViewerDep
from api.dashboard.charts import curve_chart
from api.dashboard.render import done, error_page, page
from api.deps import SessionDep
from db.errors import Conflict, NotFound
from db.models import CalibrationRun, Policy, PolicyVersion
from db.repositories import calibrations as runs
from db.repositories import policies as policy_repo
from services.calibrations import apply_run

router = APIRouter(prefix="/dashboard/calibrations", include_in_schema=False)


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def result_panels(run: CalibrationRun) -> list[dict[str, Any]]:
    """One panel per category of a run's result: its curve chart and figures."""
    categories = (run.result or {}).get("categories", {})
    x_label = "threshold τ" if "threshold" in run.method else "bias b"
    panels = []
    for name, entry in categories.items():
        value, rate = _number(entry.get("value")), _number(entry.get("rate"))
        target = _number(entry.get("target"))
        curve = [
            (x, r)
            for x, r in ((_number(p[0]), _number(p[1])) for p in entry.get("curve") or [])
            if x is not None and r is not None
        ]
        chosen = (value, rate) if value is not None and rate is not None else None
        panels.append(
            {
                "category": name,
                "value": entry.get("value"),
                "rate": rate,
                "target": target,
                "tpr": _number(entry.get("tpr")),
                "fpr": _number(entry.get("fpr")),
                "feasible": entry.get("feasible", True),
                "svg": curve_chart(curve, target=target, chosen=chosen, x_label=x_label),
            }
        )
    return panels


@router.get("", response_class=HTMLResponse)
def run_list(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    tenant_id = viewer.require_tenant()
    found = runs.list_runs(session=session, tenant_id=tenant_id, limit=100)
    names = {p.id: p.name for p in policy_repo.list_policies(session=session, tenant_id=tenant_id)}
    return page(request, "calibrations.html", viewer, runs=found, policy_names=names)


def _load(session: Any, tenant_id: uuid.UUID, run_id: str) -> CalibrationRun | None:
    try:
        return runs.get_run(session=session, tenant_id=tenant_id, run_id=uuid.UUID(run_id))
    except (ValueError, NotFound):
        return None


@router.get("/{run_id}", response_class=HTMLResponse)
def run_detail(request: Request, run_id: str, viewer: ViewerDep, session: SessionDep) -> Response:
    tenant_id = viewer.require_tenant()
    run = _load(session, tenant_id, run_id)
    if run is None:
        return error_page(request, viewer, 404, "Calibration not found", f"No run {run_id}.")
    policy = session.get(Policy, run.policy_id)
    proposed = (
        session.get(PolicyVersion, run.produced_version_id) if run.produced_version_id else None
    )
    applied = bool(policy and proposed and policy.active_version_id == proposed.id)
    return page(
        request,
        "calibration.html",
        viewer,
        nav="calibrations",
        run=run,
        policy=policy,
        proposed=proposed,
        applied=applied,
        can_apply=run.status == "succeeded" and proposed is not None and not applied,
        panels=result_panels(run),
        control_error=(run.result or {}).get("control_error"),
    )


@router.get("/{run_id}/progress")
def run_progress(run_id: str, viewer: ViewerDep, session: SessionDep) -> JSONResponse:
    """Status and progress as JSON, polled by the run page while the run is not final."""
    run = _load(session, viewer.require_tenant(), run_id)
    if run is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    return JSONResponse(
        {"status": run.status, "done": run.done, "total": run.total, "error": run.error}
    )


@router.post("/{run_id}/apply")
def apply(request: Request, run_id: str, write: TenantWriteDep, session: SessionDep) -> Response:
    """Activate the version the run proposed (audited with this key as the actor)."""
    run = _load(session, write.tenant_id, run_id)
    if run is None:
        return error_page(request, write.viewer, 404, "Calibration not found", f"No run {run_id}.")
    try:
        policy = apply_run(
            session=session, tenant_id=write.tenant_id, run_id=run.id, actor=write.actor
        )
    except (Conflict, NotFound) as exc:
        session.rollback()
        return error_page(request, write.viewer, 409, "Cannot apply this run", str(exc))
    session.commit()
    version = policy.active_version.version if policy.active_version else "?"
    return done(
        f"/dashboard/calibrations/{run.id}", f"Applied: {policy.name} is now at version {version}"
    )
