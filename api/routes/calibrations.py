"""Calibration runs: submit prompts and targets, watch progress, re-solve, apply."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from api.calibration_input import (
    CalibrationIn,
    CalibrationOptions,
    SolveIn,
    parse_json,
    parse_jsonl,
    split_items,
)
from api.deps import SessionDep, TenantAdmin
from api.errors import ApiError, is_json_content_type, validation_error
from api.openapi import AUTHENTICATED, JSON_BODY, errors, links
from core.calibration import InvalidTarget
from core.queue import CALIBRATE_TASK
from db.errors import PolicyNotFound
from db.models import CalibrationRun
from db.repositories import calibrations as runs
from db.repositories.audit import append_entry
from services import calibrations
from services.tasks import TaskMessage, send_after_commit

router = APIRouter(
    prefix="/v1/calibrations", tags=["calibrations"], responses=errors(*AUTHENTICATED)
)
#: The submission is read by hand (JSON, or multipart with a JSONL file), so its two bodies are
#: declared here; `api.openapi.install_openapi` adds their schemas to the document.
SUBMISSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CalibrationIn"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/CalibrationUpload"}},
        },
    }
}
#: The operations a submitted run links to: link name -> (method, path) of a route below.
RUN_OPERATIONS = {
    "GetCalibration": ("get", "/v1/calibrations/{run_id}"),
    "SolveAgain": ("post", "/v1/calibrations/{run_id}/solve"),
    "ApplyCalibration": ("post", "/v1/calibrations/{run_id}/apply"),
    "CancelCalibration": ("post", "/v1/calibrations/{run_id}/cancel"),
}


class Progress(BaseModel):
    done: int
    total: int


class CalibrationRunOut(BaseModel):
    id: uuid.UUID
    policy_id: uuid.UUID
    status: str
    progress: Progress
    targets: dict[str, float]
    method: str
    target_kind: str
    holdout_fraction: float
    auto_apply: bool
    result: dict[str, Any] | None
    produced_version_id: uuid.UUID | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class AppliedOut(BaseModel):
    policy: str
    active_version: int | None


def run_out(run: CalibrationRun) -> CalibrationRunOut:
    return CalibrationRunOut(
        id=run.id,
        policy_id=run.policy_id,
        status=run.status,
        progress=Progress(done=run.done, total=run.total),
        targets=run.targets,
        method=run.method,
        target_kind=run.target_kind,
        holdout_fraction=run.holdout_fraction,
        auto_apply=run.auto_apply,
        result=run.result,
        produced_version_id=run.produced_version_id,
        error=run.error,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


async def _read_form(request: Request, limit: int) -> Any:
    try:
        return await request.form(max_files=1, max_part_size=limit)
    except HTTPException as exc:  # Starlette's multipart errors: two files, a bad boundary
        if exc.status_code != 400:
            raise
        raise ApiError(422, "validation_error", str(exc.detail), field="file") from None


async def _read_submission(request: Request) -> CalibrationIn:
    """Inline JSON, or multipart with a JSONL `file` and the options as form fields."""
    limit = request.app.state.settings.max_upload_bytes
    max_prompts = request.app.state.settings.max_calibration_prompts
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"upload larger than {limit} bytes", field="file")
    content_type = request.headers.get("content-type", "")
    multipart = content_type.lower().startswith("multipart/form-data")
    if not multipart and not is_json_content_type(content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json, or multipart/form-data with a JSONL file",
            field="Content-Type",
        )
    try:
        if multipart:
            form = await _read_form(request, limit)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(
                    422,
                    "validation_error",
                    "multipart submissions need a JSONL 'file'",
                    field="file",
                )
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise ApiError(413, "too_large", f"upload larger than {limit} bytes", field="file")
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
            if "targets" in fields:
                try:
                    fields["targets"] = json.loads(fields["targets"])
                except (ValueError, RecursionError):
                    raise ApiError(
                        422, "validation_error", "targets must be a JSON object", field="targets"
                    ) from None
            options = CalibrationOptions.model_validate(fields)
            prompts = parse_jsonl(data, limit=max_prompts)
            return CalibrationIn(**options.model_dump(), prompts=prompts)
        body = await request.body()
        if len(body) > limit:
            raise ApiError(413, "too_large", f"upload larger than {limit} bytes", field="prompts")
        # Strict like every JSON body (no "1" for 1, no 0 for false); form fields are text.
        submission = CalibrationIn.model_validate(parse_json(body, field="body"), strict=True)
        if len(submission.prompts) > max_prompts:
            raise ApiError(413, "too_large", f"more than {max_prompts} prompts", field="prompts")
        return submission
    except ValidationError as exc:
        raise validation_error(exc) from None


def start_calibration(
    request: Request, session: Session, *, tenant_id: uuid.UUID, actor: str, body: CalibrationIn
) -> CalibrationRun:
    """Open a run (audited), and send its task once the transaction has committed; shared by
    this route and the dashboard's upload form."""
    items = split_items(
        body.prompts,
        holdout_fraction=body.holdout_fraction,
        seed=body.seed,
        labelled=body.target_kind == "labelled",
    )
    try:
        run = calibrations.open_run(
            session=session,
            tenant_id=tenant_id,
            policy_name=body.policy,
            items=items,
            new=body.new_run(),
        )
    except PolicyNotFound as exc:
        raise ApiError(404, "not_found", str(exc), field="policy") from None
    except InvalidTarget as exc:
        raise ApiError(422, "validation_error", exc.message, field=exc.field) from None
    append_entry(
        session=session,
        tenant_id=tenant_id,
        actor=actor,
        action="calibration.create",
        entity="calibration_run",
        entity_id=run.id,
        after={
            "policy": body.policy,
            "targets": body.targets,
            "target_kind": body.target_kind,
            "prompts": len(items),
            "auto_apply": body.auto_apply,
        },
    )
    send_after_commit(
        session,
        request.app.state.task_sender,
        TaskMessage(
            CALIBRATE_TASK, [str(run.id)], str(run.id), {"request_id": request.state.request_id}
        ),
        mark_failed=lambda error: runs.mark_run_failed(session=session, run_id=run.id, error=error),
    )
    session.refresh(run)
    return run


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: links("id", RUN_OPERATIONS), **errors(*JSON_BODY, 404)},
    openapi_extra=SUBMISSION_BODY,
)
async def create_calibration(
    request: Request, response: Response, principal: TenantAdmin, session: SessionDep
) -> CalibrationRunOut:
    body = await _read_submission(request)
    run = await run_in_threadpool(
        lambda: start_calibration(
            request, session, tenant_id=principal.require_tenant(), actor=principal.actor, body=body
        )
    )
    response.headers["Location"] = f"/v1/calibrations/{run.id}"
    return run_out(run)


@router.get("")
def list_calibrations(principal: TenantAdmin, session: SessionDep) -> list[CalibrationRunOut]:
    return [
        run_out(r) for r in runs.list_runs(session=session, tenant_id=principal.require_tenant())
    ]


@router.get("/{run_id}", responses=errors(404, 422))
def get_calibration(
    run_id: uuid.UUID, principal: TenantAdmin, session: SessionDep
) -> CalibrationRunOut:
    return run_out(
        runs.get_run(session=session, tenant_id=principal.require_tenant(), run_id=run_id)
    )


@router.post("/{run_id}/solve", responses=errors(*JSON_BODY, 404, 409))
def solve_again(
    run_id: uuid.UUID, body: SolveIn, principal: TenantAdmin, session: SessionDep
) -> CalibrationRunOut:
    """Re-solve a finished run for new targets from its stored summaries (never the model)."""
    tenant_id = principal.require_tenant()
    try:
        calibrations.solve_again(
            session=session,
            tenant_id=tenant_id,
            run_id=run_id,
            targets=body.targets,
            method=body.method,
        )
    except InvalidTarget as exc:
        raise ApiError(422, "validation_error", str(exc), field=exc.field) from None
    session.commit()
    return run_out(runs.get_run(session=session, tenant_id=tenant_id, run_id=run_id))


@router.post("/{run_id}/apply", responses=errors(404, 409, 422))
def apply_calibration(run_id: uuid.UUID, principal: TenantAdmin, session: SessionDep) -> AppliedOut:
    """Activate the policy version the run proposed (audited)."""
    tenant_id = principal.require_tenant()
    policy = calibrations.apply_run(
        session=session, tenant_id=tenant_id, run_id=run_id, actor=principal.actor
    )
    session.commit()
    active = policy.active_version
    return AppliedOut(policy=policy.name, active_version=active.version if active else None)


@router.post("/{run_id}/cancel", responses=errors(404, 409, 422))
def cancel_calibration(
    run_id: uuid.UUID, principal: TenantAdmin, session: SessionDep
) -> CalibrationRunOut:
    tenant_id = principal.require_tenant()
    run = runs.get_run(session=session, tenant_id=tenant_id, run_id=run_id)
    if not runs.mark_run_cancelled(session=session, run_id=run.id, tenant_id=tenant_id):
        raise ApiError(409, "conflict", f"calibration run is {run.status}; it cannot be cancelled")
    session.commit()
    return run_out(runs.get_run(session=session, tenant_id=tenant_id, run_id=run_id))
