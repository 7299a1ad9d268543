"""The auto-tuner: a beat task that moves `auto_tune` thresholds back toward their targets.

For each active threshold-mode policy it reads the window's first-token summaries of every
request the policy served (all its versions: replay makes each one evidence about the active
rules, whoever served it), in `WINDOW_PARTS` slices of time for the drift check, and asks
`core.autotune.propose_threshold` per auto-tuned category. Any change becomes a new policy
version by the auto-tuner, with the figures in its reason and an audit entry.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import pairwise

from celery import Task
from sqlalchemy.orm import Session

from core.autotune import WINDOW_PARTS, TuneDecision, TuneGuards, propose_threshold
from core.queue import AUTOTUNE_TASK
from core.settings import get_settings
from core.summary import Summaries
from db.actors import AUTO_TUNER
from db.models import Policy
from db.repositories.policies import (
    NewVersion,
    PolicyRef,
    all_active_policies,
    create_version,
    list_versions,
)
from db.repositories.traffic import WindowTooLarge, window_traffic
from db.session import session_scope
from db.types import utcnow
from workers.celery_app import app
from workers.runtime import session_factory

log = logging.getLogger(__name__)

#: The most requests one policy's tuning round replays (about 100 MB of arrays at most); a
#: busier window is tuned on its newest slices alone.
MAX_TUNED_REQUESTS = 1_000_000


def guards() -> TuneGuards:
    s = get_settings()
    return TuneGuards(
        min_samples=s.autotune_min_samples,
        max_rate_step=s.autotune_max_rate_step,
        hysteresis=s.autotune_hysteresis,
    )


def window_summaries(
    session: Session, policy: Policy, *, start: datetime, end: datetime
) -> tuple[Summaries, list[int]]:
    """The summaries of the policy's requests created in [start, end), oldest slice first, and
    each slice's row count. Slices are read newest first: when the window holds more than
    `MAX_TUNED_REQUESTS`, the older slices are left out."""
    versions = [
        v.id
        for v in list_versions(session=session, tenant_id=policy.tenant_id, policy_id=policy.id)
    ]
    bounds = [start + (end - start) * i / WINDOW_PARTS for i in range(WINDOW_PARTS + 1)]
    slices: list[Summaries] = []
    room = MAX_TUNED_REQUESTS
    for since, until in reversed(list(pairwise(bounds))):
        try:
            part = window_traffic(
                session=session,
                tenant_id=policy.tenant_id,
                policy_version_ids=versions,
                start=since,
                end=until,
                limit=room,
            ).summaries
        except WindowTooLarge:
            log.warning(
                "policy %s: window too busy, tuned on its newest %d slices", policy.id, len(slices)
            )
            break
        slices.insert(0, part)
        room -= len(part)
    return Summaries.concat(slices), [len(part) for part in slices]


def tune_policy(
    session: Session,
    policy: Policy,
    *,
    window: timedelta,
    end: datetime,
    tune_guards: TuneGuards,
) -> list[TuneDecision]:
    """Decisions for one policy's auto-tuned categories on its traffic in [end - window, end);
    writes a version if any changed."""
    version = policy.active_version
    if version is None or version.mode != "threshold":
        return []
    rules = version.rules
    tuned = [
        name
        for name, rule in rules.categories.items()
        if rule.auto_tune and rule.enabled and rule.target_rate is not None
    ]
    if not tuned:
        return []
    summaries, parts = window_summaries(session, policy, start=end - window, end=end)
    decisions = [
        propose_threshold(summaries, rules=rules, category=name, guards=tune_guards, parts=parts)
        for name in tuned
    ]
    changed = [d for d in decisions if d.changed]
    if changed:
        tuned_rules = rules.with_rules(
            {
                d.category: rules.rule(d.category).model_copy(update={"threshold": d.new_threshold})
                for d in changed
            }
        )
        reason = "; ".join(
            f"{d.category}: replayed {d.replayed_rate:.3f} vs target {d.target:.3f} over "
            f"{d.samples} requests, threshold {d.old_threshold:.4f} -> {d.new_threshold:.4f}"
            for d in changed
        )
        create_version(
            session=session,
            ref=PolicyRef.of(policy),
            new=NewVersion(tuned_rules, AUTO_TUNER, f"auto-tune: {reason}"),
            expected_active_version=version.version,
        )
    return decisions


@app.task(name=AUTOTUNE_TASK, ignore_result=True, bind=True)
def autotune(self: Task, until: str | None = None) -> int:
    """One round over every tenant; returns the number of policies that got a new version.

    The windows end now, or at `until` (ISO 8601: a round over past traffic, as the worker
    test runs them on a simulated clock)."""
    settings = get_settings()
    window = timedelta(seconds=settings.autotune_window_seconds)
    end = utcnow() if until is None else datetime.fromisoformat(until)
    updated = 0
    with session_scope(session_factory()) as session:
        for policy in all_active_policies(session=session):
            decisions = tune_policy(session, policy, window=window, end=end, tune_guards=guards())
            if any(d.changed for d in decisions):
                updated += 1
                log.info("auto-tuned policy %s: %s", policy.id, [d.reason for d in decisions])
    log.info("auto-tune round %s done: %d policies updated", self.request.id, updated)
    return updated
