"""Start a calibration from the dashboard: a JSONL upload, a target per category, options.

The form is validated by the API's own parts (`CalibrationOptions`, `parse_jsonl` with its line
numbers, `start_calibration`), each error shown next to its field; a started run opens its page,
which follows its progress live.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from api.calibration_input import CalibrationIn, CalibrationOptions, parse_jsonl
from api.dashboard.auth import Viewer, ViewerDep, check_csrf
from api.dashboard.render import page
from api.deps import SessionDep
from api.errors import ApiError, field_path
from api.routes.calibrations import start_calibration
from core.calibration_problem import METHODS
from core.categories import CATEGORIES
from db.repositories import policies as policy_repo
from services.tasks import BrokerUnavailable

router = APIRouter(prefix="/dashboard/new/calibration", include_in_schema=False)
DEFAULT_VALUES: dict[str, Any] = {"target_kind": "traffic", "holdout_fraction": "0.2"}


def _form_page(
    request: Request,
    viewer: Viewer,
    session: Session,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> Response:
    policies = policy_repo.list_policies(session=session, tenant_id=viewer.require_tenant())
    return page(
        request,
        "calibration_new.html",
        viewer,
        status_code=status_code,
        nav="calibrations",
        policies=[p.name for p in policies],
        default_policy=next((p.name for p in policies if p.is_default), None),
        methods=METHODS,
        values=values,
        errors=errors,
    )


@router.get("", response_class=HTMLResponse)
def new_calibration_form(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    return _form_page(request, viewer, session, dict(DEFAULT_VALUES), {})


def _options(form: FormData) -> dict[str, Any]:
    """The submission's options as `CalibrationOptions` reads them (targets left blank are
    not targeted)."""
    targets = {
        name: str(form.get(f"targets.{name}", "")).strip()
        for name in CATEGORIES
        if str(form.get(f"targets.{name}", "")).strip()
    }
    options: dict[str, Any] = {
        "policy": str(form.get("policy", "")),
        "targets": targets,
        "target_kind": str(form.get("target_kind", "traffic")),
        "holdout_fraction": str(form.get("holdout_fraction", "")).strip() or "0",
        "auto_apply": form.get("auto_apply") == "on",
    }
    method = str(form.get("method", "")).strip()
    if method:
        options["method"] = method
    return options


@router.post("")
async def start(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    settings = request.app.state.settings
    form = await request.form(max_files=1, max_part_size=settings.max_upload_bytes)
    check_csrf(viewer, str(form.get("csrf", "")))
    tenant_id = viewer.require_tenant()
    raw = _options(form)
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
    errors: dict[str, str] = {}
    try:
        options = CalibrationOptions.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            errors.setdefault(
                field_path(error["loc"]), str(error["msg"]).removeprefix("Value error, ")
            )
        options = None
    upload = form.get("file")
    prompts = []
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors["file"] = 'choose a JSONL file: one {"prompt", "label"?} object per line'
    else:
        data = await upload.read(settings.max_upload_bytes + 1)
        try:
            if len(data) > settings.max_upload_bytes:
                raise ApiError(
                    413, "too_large", f"upload larger than {settings.max_upload_bytes} bytes"
                )
            prompts = parse_jsonl(data, limit=settings.max_calibration_prompts)
        except ApiError as exc:
            errors["file"] = exc.message
    if options is None or errors:
        return _form_page(request, viewer, session, values, errors, status_code=422)
    body = CalibrationIn(**options.model_dump(), prompts=prompts)
    try:
        run = await run_in_threadpool(
            lambda: start_calibration(
                request, session, tenant_id=tenant_id, actor=viewer.actor, body=body
            )
        )
    except BrokerUnavailable:
        errors["form"] = "The task broker is unavailable, so the run could not be queued. Retry."
        return _form_page(request, viewer, session, values, errors, status_code=503)
    except ApiError as exc:
        session.rollback()
        field = exc.field or "form"
        field = "file" if field.startswith("prompts") else field
        errors[field] = exc.message
        return _form_page(request, viewer, session, values, errors, status_code=exc.status)
    return RedirectResponse(f"/dashboard/calibrations/{run.id}", status_code=303)
