"""What-if replay: the refusal rates candidate rules would have had on a window of real traffic.

Every served request keeps its first-token summary, so the decision any rules would have made
on it is recomputed exactly with core's rules (`core.replay`), without the model. The window is
the named policy's own traffic (every version of it) in the caller's tenant; each category's
rate is a share of all of the window's requests, beside the rate actually served, both with a
95% Wilson interval. `preview_policy` is the one entry point (the API route and the dashboard's
editor both call it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.intervals import Interval, wilson_interval
from core.policy import PolicyRules
from core.replay import one_hot, refusal_chances
from db.repositories import policies as policy_repo
from db.repositories.traffic import WindowTooLarge, window_traffic

#: The longest window one preview replays.
MAX_PREVIEW_WINDOW = timedelta(days=31)
#: The most requests one preview replays (about 100 MB of arrays at most).
MAX_PREVIEW_REQUESTS = 1_000_000


class InvalidPreview(ValueError):
    """A preview that cannot be computed; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RateEstimate:
    """Refusals of one category among the window's requests, as a rate with its interval.

    `refusals` is an expected count where sampled bias-mode rows are involved (fractional)."""

    refusals: float
    rate: float | None
    interval: Interval | None

    @staticmethod
    def of(refusals: float, requests: int) -> RateEstimate:
        rate = refusals / requests if requests else None
        return RateEstimate(refusals, rate, wilson_interval(refusals, requests))


@dataclass(frozen=True)
class CategoryPreview:
    """One category: the candidate's rate beside the served one, and how many requests would
    change (expected counts): refused with this category now but not before, and the reverse."""

    category: str
    candidate: RateEstimate
    served: RateEstimate
    newly_refused: float
    no_longer_refused: float


@dataclass(frozen=True)
class PolicyPreview:
    """The replay of candidate rules over a policy's traffic in [start, end)."""

    policy: str
    start: datetime
    end: datetime
    requests: int
    categories: dict[str, CategoryPreview]


def check_window(start: datetime, end: datetime) -> None:
    """`InvalidPreview` unless start < end and the window is at most `MAX_PREVIEW_WINDOW`."""
    if start >= end:
        raise InvalidPreview("start", "start must be before end")
    if end - start > MAX_PREVIEW_WINDOW:
        raise InvalidPreview("end", f"the window may span at most {MAX_PREVIEW_WINDOW.days} days")


def preview_policy(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy_name: str,
    rules: PolicyRules,
    start: datetime,
    end: datetime,
) -> PolicyPreview:
    """Replay `rules` over the tenant's policy `policy_name`'s requests created in [start, end).

    Raises `InvalidPreview` for a bad window (or one with more than `MAX_PREVIEW_REQUESTS`) and
    `PolicyNotFound` when the tenant has no such policy.
    """
    check_window(start, end)
    policy = policy_repo.get_policy_by_name(session=session, tenant_id=tenant_id, name=policy_name)
    versions = policy_repo.list_versions(session=session, tenant_id=tenant_id, policy_id=policy.id)
    try:
        traffic = window_traffic(
            session=session,
            tenant_id=tenant_id,
            policy_version_ids=[v.id for v in versions],
            start=start,
            end=end,
            limit=MAX_PREVIEW_REQUESTS,
        )
    except WindowTooLarge as exc:
        raise InvalidPreview("start", f"{exc}; choose a shorter window") from None
    chances = refusal_chances(rules, traffic.summaries, traffic.greedy)  # (N, C)
    served = one_hot(traffic.served)  # (N, C)
    n = len(traffic)
    candidate_counts = chances.sum(axis=0)
    served_counts = served.sum(axis=0)
    newly = ((1.0 - served) * chances).sum(axis=0)
    lost = (served * (1.0 - chances)).sum(axis=0)
    categories = {
        name: CategoryPreview(
            category=name,
            candidate=RateEstimate.of(_count(candidate_counts[c]), n),
            served=RateEstimate.of(_count(served_counts[c]), n),
            newly_refused=_count(newly[c]),
            no_longer_refused=_count(lost[c]),
        )
        for c, name in enumerate(CATEGORIES)
    }
    return PolicyPreview(policy.name, start, end, n, categories)


def _count(value: np.floating | float) -> float:
    """A count as a plain float, without the rounding noise of summed 0/1 floats."""
    rounded = round(float(value))
    return float(rounded) if abs(float(value) - rounded) < 1e-9 else float(value)
