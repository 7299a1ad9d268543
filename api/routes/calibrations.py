"""Calibration runs: submit prompts and targets, watch progress, re-solve, apply."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api.calibration_input import (
    CalibrationIn,
    CalibrationOptions,
    SolveIn,
    parse_jsonl,
    split_items,
)
from api.deps import Principal, SessionDep, TenantAdmin
from api.errors import ApiError
from api.tasks_client import NOT_QUEUED, send_or_undo
from core.calibration import InvalidTarget
from core.queue import CALIBRATE_TASK
from db.models import CalibrationRun
from db.repositories import calibrations as runs
from services import calibrations

router = APIRouter(prefix="/v1/calibrations", tags=["calibrations"])


def run_out(run: CalibrationRun) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "policy_id": str(run.policy_id),
        "status": run.status,
        "progress": {"done": run.done, "total": run.total},
        "targets": run.targets,
        "method": run.method,
        "target_kind": run.target_kind,
        "holdout_fraction": run.holdout_fraction,
        "auto_apply": run.auto_apply,
        "result": run.result,
        "produced_version_id": str(run.produced_version_id) if run.produced_version_id else None,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def _validation(exc: ValidationError) -> ApiError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"])
    return ApiError(
        422, "validation_error", str(first["msg"]).removeprefix("Value error, "), field=field
    )


async def _read_submission(request: Request) -> CalibrationIn:
    """Inline JSON, or multipart with a JSONL `file` and the options as form fields."""
    limit = request.app.state.settings.max_upload_bytes
    max_prompts = request.app.state.settings.max_calibration_prompts
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"upload larger than {limit} bytes", field="file")
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_part_size=limit)
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
                except json.JSONDecodeError:
                    raise ApiError(
                        422, "validation_error", "targets must be a JSON object", field="targets"
                    ) from None
            options = CalibrationOptions.model_validate(fields)
            prompts = parse_jsonl(data, limit=max_prompts)
            return CalibrationIn(**options.model_dump(), prompts=prompts)
        body = await request.body()
        if len(body) > limit:
            raise ApiError(413, "too_large", f"upload larger than {limit} bytes", field="prompts")
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError:
            raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
        submission = CalibrationIn.model_validate(parsed)
        if len(submission.prompts) > max_prompts:
            raise ApiError(413, "too_large", f"more than {max_prompts} prompts", field="prompts")
        return submission
    except ValidationError as exc:
        raise _validation(exc) from None


def _create(
    request: Request, session: Session, principal: Principal, body: CalibrationIn
) -> CalibrationRun:
    items = split_items(
        body.prompts,
        holdout_fraction=body.holdout_fraction,
        seed=body.seed,
        labelled=body.target_kind == "labelled",
    )
    try:
        run = calibrations.open_run(
            session=session,
            tenant_id=principal.require_tenant(),
            policy_name=body.policy,
            items=items,
            targets=body.targets,
            method=body.method,
            target_kind=body.target_kind,
            holdout_fraction=body.holdout_fraction,
            auto_apply=body.auto_apply,
        )
    except InvalidTarget as exc:
        raise ApiError(422, "validation_error", exc.message, field=exc.field) from None
    session.commit()
    sender = request.app.state.task_sender
    headers = {"request_id": request.state.request_id}

    def undo() -> None:
        runs.mark_run_failed(session=session, run_id=run.id, error=NOT_QUEUED)
        session.commit()

    send_or_undo(lambda: sender.send(CALIBRATE_TASK, [str(run.id)], headers=headers), undo)
    session.refresh(run)
    return run


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def create_calibration(
    request: Request, response: Response, principal: TenantAdmin, session: SessionDep
) -> dict[str, Any]:
    body = await _read_submission(request)
    run = await run_in_threadpool(_create, request, session, principal, body)
    response.headers["Location"] = f"/v1/calibrations/{run.id}"
    return run_out(run)


@router.get("")
def list_calibrations(principal: TenantAdmin, session: SessionDep) -> list[dict[str, Any]]:
    return [
        run_out(r) for r in runs.list_runs(session=session, tenant_id=principal.require_tenant())
    ]


@router.get("/{run_id}")
def get_calibration(
    run_id: uuid.UUID, principal: TenantAdmin, session: SessionDep
) -> dict[str, Any]:
    return run_out(
        runs.get_run(session=session, tenant_id=principal.require_tenant(), run_id=run_id)
    )


@router.post("/{run_id}/solve")
def solve_again(
    run_id: uuid.UUID, body: SolveIn, principal: TenantAdmin, session: SessionDep
) -> dict[str, Any]:
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


@router.post("/{run_id}/apply")
def apply_calibration(
    run_id: uuid.UUID, principal: TenantAdmin, session: SessionDep
) -> dict[str, Any]:
    """Activate the policy version the run proposed (audited)."""
    tenant_id = principal.require_tenant()
    policy = calibrations.apply_run(
        session=session, tenant_id=tenant_id, run_id=run_id, actor=principal.actor
    )
    session.commit()
    active = policy.active_version
    return {"policy": policy.name, "active_version": active.version if active else None}


@router.post("/{run_id}/cancel")
def cancel_calibration(
    run_id: uuid.UUID, principal: TenantAdmin, session: SessionDep
) -> dict[str, Any]:
    tenant_id = principal.require_tenant()
    run = runs.get_run(session=session, tenant_id=tenant_id, run_id=run_id)
    if not runs.mark_run_cancelled(session=session, run_id=run.id, tenant_id=tenant_id):
        raise ApiError(409, "conflict", f"calibration run is {run.status}; it cannot be cancelled")
    session.commit()
    return run_out(runs.get_run(session=session, tenant_id=tenant_id, run_id=run_id))
