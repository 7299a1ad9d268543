"""The editor's live what-if preview: the edited rules replayed over stored traffic.

The editor's script posts its whole form here (with the session's CSRF token) as the operator
moves a threshold or bias; the answer is JSON: per category the rate the edited rules would have
had beside the rate served, with counts and 95% intervals, from `services.policy_preview` (the
same replay as `POST /v1/policies/{name}/preview`), or the form's validation errors by field.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.dashboard.auth import TenantWriteDep
from api.dashboard.policy_form import PREVIEW_WINDOWS, parse_policy_form
from api.deps import SessionDep
from db.errors import PolicyNotFound
from db.types import utcnow
from services.policy_preview import InvalidPreview, PolicyPreview, RateEstimate, preview_policy

router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _rate(estimate: RateEstimate) -> dict[str, Any]:
    interval = estimate.interval
    return {
        "refusals": estimate.refusals,
        "rate": estimate.rate,
        "low": None if interval is None else interval.low,
        "high": None if interval is None else interval.high,
    }


def preview_json(result: PolicyPreview) -> dict[str, Any]:
    return {
        "policy": result.policy,
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "requests": result.requests,
        "categories": {
            name: {
                "candidate": _rate(c.candidate),
                "served": _rate(c.served),
                "newly_refused": c.newly_refused,
                "no_longer_refused": c.no_longer_refused,
            }
            for name, c in result.categories.items()
        },
    }


@router.post("/preview")
async def preview(request: Request, write: TenantWriteDep, session: SessionDep) -> JSONResponse:
    """The form's rules replayed over `replay_on`'s traffic in the last `window`."""
    form = await request.form()  # the form `write` checked the token of (parsed once, cached)
    parsed = parse_policy_form(form, creating=False)
    if parsed.rules is None:
        return JSONResponse({"errors": parsed.form.errors}, status_code=422)
    window = PREVIEW_WINDOWS.get(str(form.get("window", "")), PREVIEW_WINDOWS["24h"])
    end = utcnow()
    try:
        result = preview_policy(
            session=session,
            tenant_id=write.tenant_id,
            policy_name=str(form.get("replay_on", "")),
            rules=parsed.rules,
            start=end - window,
            end=end,
        )
    except InvalidPreview as exc:
        return JSONResponse({"errors": {exc.field: exc.message}}, status_code=422)
    except PolicyNotFound:
        return JSONResponse({"errors": {"replay_on": "pick one of your policies"}}, status_code=404)
    return JSONResponse({"errors": {}, **preview_json(result)})
