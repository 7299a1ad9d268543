"""What-if replay of candidate rules over a policy's stored traffic (tenant admins only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep, TenantAdmin
from api.errors import ApiError
from api.openapi import AUTHENTICATED, JSON_BODY, errors
from api.routes.stats import Timestamp, day_before
from core.intervals import Interval
from core.policy import CategoryRule, InvalidPolicy, PolicyMode, PolicyRules, parse_rules
from db.errors import PolicyNotFound
from db.types import utcnow
from services.policy_preview import InvalidPreview, RateEstimate, preview_policy

router = APIRouter(prefix="/v1/policies", tags=["policies"], responses=errors(*AUTHENTICATED))


class CandidateRules(BaseModel):
    """Rules to try, in the shape `PUT /v1/policies/{name}` takes them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: PolicyMode
    categories: dict[str, CategoryRule] = Field(default_factory=dict)

    def parsed(self) -> PolicyRules:
        try:
            return parse_rules({"mode": self.mode, "categories": self.categories})
        except InvalidPolicy as exc:
            raise InvalidPolicy(f"rules.{exc.field}", exc.message) from None


class PreviewIn(BaseModel):
    """Candidate rules and the window of stored traffic [start, end) to replay them on
    (default: the day before `end`, which defaults to now)."""

    model_config = ConfigDict(extra="forbid")

    rules: CandidateRules
    start: Timestamp | None = None
    end: Timestamp | None = None


class IntervalOut(BaseModel):
    low: float
    high: float


class RateOut(BaseModel):
    refusals: float = Field(description="expected where sampled bias-mode rows are replayed")
    rate: float | None
    interval: IntervalOut | None = Field(description="95% Wilson interval of the rate")


class CategoryPreviewOut(BaseModel):
    candidate: RateOut
    served: RateOut
    newly_refused: float
    no_longer_refused: float


class PreviewOut(BaseModel):
    policy: str
    start: datetime
    end: datetime
    requests: int
    categories: dict[str, CategoryPreviewOut]


def interval_out(interval: Interval | None) -> IntervalOut | None:
    return None if interval is None else IntervalOut(low=interval.low, high=interval.high)


def _rate_out(estimate: RateEstimate) -> RateOut:
    return RateOut(
        refusals=estimate.refusals, rate=estimate.rate, interval=interval_out(estimate.interval)
    )


@router.post("/{name}/preview", responses=errors(*JSON_BODY, 404))
def preview(name: str, body: PreviewIn, principal: TenantAdmin, session: SessionDep) -> PreviewOut:
    """Per category, the refusal rate `rules` would have had on this policy's requests in the
    window, recomputed from their stored first-token summaries, beside the rate served."""
    tenant_id = principal.require_tenant()
    end = body.end or utcnow()
    start = body.start or day_before(end)
    try:
        result = preview_policy(
            session=session,
            tenant_id=tenant_id,
            policy_name=name,
            rules=body.rules.parsed(),
            start=start,
            end=end,
        )
    except InvalidPreview as exc:
        raise ApiError(422, "validation_error", exc.message, field=exc.field) from None
    except PolicyNotFound as exc:
        raise ApiError(404, "not_found", str(exc), field="name") from None
    return PreviewOut(
        policy=result.policy,
        start=result.start,
        end=result.end,
        requests=result.requests,
        categories={
            c: CategoryPreviewOut(
                candidate=_rate_out(p.candidate),
                served=_rate_out(p.served),
                newly_refused=p.newly_refused,
                no_longer_refused=p.no_longer_refused,
            )
            for c, p in result.categories.items()
        },
    )
