"""Shadow against live: per category, what a policy's shadow versions would have refused on the
same requests beside what was served, each rate with its 95% Wilson interval."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.intervals import Interval, wilson_interval
from db.models import Policy
from db.repositories import policies as policy_repo
from db.repositories.stats import StatsQuery, StatTotals
from services.statistics import category_stats


@dataclass(frozen=True)
class RoleFigures:
    """One role's (live or shadow) requests, refusals, rate and interval for a category."""

    requests: int
    refusals: int
    rate: float | None
    interval: Interval | None

    @staticmethod
    def of(totals: StatTotals) -> RoleFigures:
        interval = wilson_interval(totals.refusals, totals.requests)
        return RoleFigures(totals.requests, totals.refusals, totals.refusal_rate, interval)


@dataclass(frozen=True)
class ShadowComparison:
    """One category: live and shadow figures; `distinct` when their intervals do not overlap
    (the difference is more than noise)."""

    category: str
    live: RoleFigures
    shadow: RoleFigures

    @property
    def difference(self) -> float | None:
        if self.live.rate is None or self.shadow.rate is None:
            return None
        return self.shadow.rate - self.live.rate

    @property
    def distinct(self) -> bool:
        a, b = self.live.interval, self.shadow.interval
        return a is not None and b is not None and (a.high < b.low or b.high < a.low)


def shadow_against_live(
    *, session: Session, tenant_id: uuid.UUID, policy: Policy, start: datetime, end: datetime
) -> list[ShadowComparison]:
    """Per category, the policy's live statistics (every version) and its shadow ones over
    [start, end)."""
    versions = policy_repo.list_versions(session=session, tenant_id=tenant_id, policy_id=policy.id)
    query = StatsQuery(tenant_id, start, end, [v.id for v in versions], CATEGORIES)
    span = max(int((end - start).total_seconds()), 60)
    live = category_stats(session, query, bucket_seconds=span)
    shadow = category_stats(session, replace(query, shadow=True), bucket_seconds=span)
    return [
        ShadowComparison(c, RoleFigures.of(live[c].totals), RoleFigures.of(shadow[c].totals))
        for c in CATEGORIES
    ]
