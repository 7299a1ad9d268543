"""The auto-tuner: a beat task that nudges `auto_tune` thresholds back toward their targets.

For each active threshold-mode policy, it reads the last window of the active version's
requests and refusals and of every version's score histograms, and asks `core.autotune.propose_threshold` (minimum samples, the observed rate's
Wilson interval, hysteresis, a move bounded in refusal rate, policy bounds). Any change becomes a new policy version by the auto-tuner, with the
figures in its reason and an audit entry.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from sqlalchemy.orm import Session

from core.autotune import TuneDecision, TuneGuards, propose_threshold
from core.histogram import HISTOGRAM_BINS
from core.queue import AUTOTUNE_TASK
from core.settings import get_settings
from db.actors import AUTO_TUNER
from db.models import Policy
from db.repositories.policies import all_active_policies, create_version, list_versions
from db.repositories.stats import StatsQuery, category_totals
from db.session import session_scope
from db.types import utcnow
from workers.celery_app import app
from workers.runtime import session_factory

log = logging.getLogger(__name__)


def guards() -> TuneGuards:
    s = get_settings()
    return TuneGuards(
        min_samples=s.autotune_min_samples,
        max_rate_step=s.autotune_max_rate_step,
        hysteresis=s.autotune_hysteresis,
    )


def tune_policy(
    session: Session, policy: Policy, *, window: timedelta, tune_guards: TuneGuards
) -> list[TuneDecision]:
    """Decisions for one policy's auto-tuned categories; writes a version if any changed."""
    version = policy.active_version
    if version is None or version.mode != "threshold":
        return []
    rules = version.rules
    tuned = {
        n: r
        for n, r in rules.categories.items()
        if r.auto_tune and r.enabled and r.target_rate is not None
    }
    if not tuned:
        return []
    since = utcnow() - window
    query = StatsQuery(
        policy.tenant_id, since, policy_version_ids=[version.id], categories=[*tuned]
    )
    totals = category_totals(session, query)
    # Scores do not depend on the rules: every version's histogram of the window counts.
    every_version = list_versions(session=session, tenant_id=policy.tenant_id, policy_id=policy.id)
    scores = category_totals(
        session, replace(query, policy_version_ids=[v.id for v in every_version])
    )
    decisions = []
    for name, rule in tuned.items():
        t = totals.get(name)
        pooled = scores.get(name)
        decisions.append(
            propose_threshold(
                t.histogram if t else [0] * HISTOGRAM_BINS,
                current=rule.threshold,
                target=float(rule.target_rate or 0.0),
                requests=t.requests if t else 0,
                refusals=t.refusals if t else 0,
                guards=tune_guards,
                min_threshold=rule.min_threshold,
                max_threshold=rule.max_threshold,
                category=name,
                pooled=pooled.histogram if pooled else None,
            )
        )
    changed = [d for d in decisions if d.changed]
    if changed:
        tuned_rules = rules.with_rules(
            {
                d.category: rules.rule(d.category).model_copy(update={"threshold": d.new_threshold})
                for d in changed
            }
        )
        reason = "; ".join(
            f"{d.category}: observed {d.observed_rate:.3f} vs target {d.target:.3f} over {d.samples} requests,"
            f" threshold {d.old_threshold:.4f} -> {d.new_threshold:.4f}"
            for d in changed
        )
        create_version(
            session=session,
            tenant_id=policy.tenant_id,
            policy_id=policy.id,
            rules=tuned_rules,
            actor=AUTO_TUNER,
            reason=f"auto-tune: {reason}",
            expected_active_version=version.version,
        )
    return decisions


@app.task(name=AUTOTUNE_TASK, ignore_result=True)
def autotune() -> int:
    """One round over every tenant; returns the number of policies that got a new version."""
    settings = get_settings()
    window = timedelta(seconds=settings.autotune_window_seconds)
    updated = 0
    with session_scope(session_factory()) as session:
        for policy in all_active_policies(session=session):
            decisions = tune_policy(session, policy, window=window, tune_guards=guards())
            if any(d.changed for d in decisions):
                updated += 1
                log.info("auto-tuned policy %s: %s", policy.id, [d.reason for d in decisions])
    return updated
