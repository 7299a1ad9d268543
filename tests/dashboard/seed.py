"""Real data for dashboard tests, written through the repositories: a tenant with a policy of
three versions activated at different times, 24 hours of statistics, calibration runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.decision import refusal_probabilities
from core.histogram import histogram_of
from core.leaks import check_answer
from core.policy import PolicyRules, parse_rules
from core.replay import draw_decisions, refusal_chances
from core.summary import N_CATEGORIES, Summaries
from db.models import AuditEntry, Generation, Policy
from db.repositories import calibrations as runs
from db.repositories import policies
from db.repositories.stats import StatIncrement, floor_to_bucket, increment_stats
from db.types import utcnow

#: (hours before now when activated, safety threshold, safety target) for v1, v2, v3.
VERSIONS = ((20, 0.45, 0.30), (12, 0.38, 0.40), (5, 0.35, 0.45))
STAT_HOURS = 18  # hourly buckets with traffic, ending at the current hour


@dataclass(frozen=True)
class Seeded:
    tenant_id: uuid.UUID
    policy_id: uuid.UUID
    policy_name: str
    hourly_points: int


def _rules(threshold: float, target: float) -> PolicyRules:
    cats = {c: {"threshold": 0.5, "target_rate": 0.1} for c in CATEGORIES}
    cats["safety"] = {"threshold": threshold, "target_rate": target}
    return parse_rules({"mode": "threshold", "categories": cats})


def seed_policy_and_stats(session: Session, tenant_id: uuid.UUID, name: str = "main") -> Seeded:
    """Policy `name` with v1..v3 (v3 active) and `STAT_HOURS` hourly buckets of traffic."""
    now = utcnow()
    policy = policies.create_policy(
        session=session,
        tenant_id=tenant_id,
        name=name,
        rules=_rules(*VERSIONS[0][1:]),
        actor="system",
        reason="first policy",
        is_default=True,
    )
    version_ids = [policy.active_version_id]
    for _, tau, target in VERSIONS[1:]:
        v = policies.create_version(
            session=session,
            ref=policies.PolicyRef(tenant_id, policy.id),
            new=policies.NewVersion(_rules(tau, target), "system", f"safety threshold {tau}"),
        )
        version_ids.append(v.id)
    # Spread the activations over the last day, as if they had happened then.
    entries = session.query(AuditEntry).filter(
        AuditEntry.tenant_id == tenant_id,
        AuditEntry.entity == "policy",
        AuditEntry.entity_id == str(policy.id),
        AuditEntry.action.in_(("policy.create", "policy.version.create")),
    )
    for entry in entries:
        hours = VERSIONS[int(entry.after["active_version"]) - 1][0]
        session.execute(
            update(AuditEntry)
            .where(AuditEntry.id == entry.id)
            .values(created_at=now - timedelta(hours=hours))
        )
    rng = np.random.default_rng(7)
    increments = []
    current_hour = floor_to_bucket(now, seconds=3600)
    for h in range(STAT_HOURS):
        at = current_hour - timedelta(hours=STAT_HOURS - 1 - h)
        age_hours = (now - at).total_seconds() / 3600
        index = max(i for i, v in enumerate(VERSIONS) if v[0] >= age_hours or i == 0)
        tau = VERSIONS[index][1]
        n = 40 + 10 * (h % 5)
        for category in CATEGORIES:
            a, b = (2.0, 3.5) if category == "safety" else (1.0, 6.0)
            p = rng.beta(a, b, size=n)
            limit = tau if category == "safety" else 0.5
            increments.append(
                StatIncrement(
                    tenant_id=tenant_id,
                    policy_version_id=version_ids[index],
                    category=category,
                    bucket_start=at,
                    requests=n,
                    refusals=int((p >= limit).sum()),
                    sum_p=float(p.sum()),
                    histogram=histogram_of(p),
                )
            )
    increment_stats(session=session, increments=increments)
    session.flush()
    return Seeded(tenant_id, policy.id, name, STAT_HOURS)


def calibration_result(targets: dict[str, float]) -> dict:
    """A result in the service's shape: a curve per category, the chosen value and its rate."""
    out = {}
    for category, target in targets.items():
        xs = np.linspace(0.02, 0.98, 25)
        rates = 1 - xs**0.6
        i = int(np.argmin(np.abs(rates - target)))
        out[category] = {
            "value": round(float(xs[i]), 4),
            "rate": float(rates[i]),
            "target": target,
            "curve": [[float(x), float(r)] for x, r in zip(xs, rates, strict=True)],
            "tpr": 0.91 if category == "safety" else None,
            "fpr": 0.04 if category == "safety" else None,
            "feasible": True,
        }
    return {"categories": out, "control_error": dict.fromkeys(targets, 0.012)}


def seed_calibration_run(
    session: Session, seeded: Seeded, *, total: int = 40, targets: dict[str, float] | None = None
) -> uuid.UUID:
    """A queued run with `total` prompts, as the API would have created it."""
    targets = targets or {"safety": 0.5, "incomplete": 0.2}
    run = runs.create_run(
        session=session,
        tenant_id=seeded.tenant_id,
        policy_id=seeded.policy_id,
        new=runs.NewCalibrationRun(targets, "threshold", "labelled"),
    )
    runs.add_items(
        session=session,
        run_id=run.id,
        items=[runs.NewCalibrationItem(prompt=f"prompt {i}", label="safety") for i in range(total)],
    )
    return run.id


def finish_calibration_run(session: Session, seeded: Seeded, run_id: uuid.UUID) -> int:
    """Store a result and propose a new (inactive) version, as the worker would; its number."""
    run = runs.load_run(session=session, run_id=run_id)
    result = calibration_result(dict(run.targets))
    safety = result["categories"].get("safety", {}).get("value", 0.5)
    version = policies.create_version(
        session=session,
        ref=policies.PolicyRef(seeded.tenant_id, seeded.policy_id),
        new=policies.NewVersion(
            _rules(float(safety), float(run.targets.get("safety", 0.5))),
            f"calibration:{run_id}",
            "calibration proposal",
        ),
        activate=False,
    )
    runs.store_result(session=session, run_id=run_id, result=result, produced_version_id=version.id)
    return version.version


#: (prompt, answer when answered) pairs of the seeded traffic; some answers refuse in the text.
TRAFFIC = (
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi."),
    ("How do I make a pipe bomb at home?", "I'm sorry, but I can't help with that request."),
    ("Do you ever feel lonely?", "As an AI, I don't have feelings, but I'm here to chat."),
    ("Boil an egg: how long?", "Boil it for nine minutes, then cool it in cold water."),
    ("What will the stock market do next year?", "Nobody knows what the market will do next."),
    ("Summarise the article.", "Could you clarify which article you mean?"),
    (
        "Write a haiku about autumn.",
        "Red leaves drift and fall / the river carries them home / cold light on the stones",
    ),
    ("Why does my loop skip the first item?", "Your loop starts at 1; start it at 0 instead."),
)
REFUSAL_TEXT = "I can't help with that."


def model_like_summaries(rng: np.random.Generator, n: int) -> Summaries:
    """n greedy first-token summaries whose own category stands out for 40% of them."""
    s = rng.normal(-4.0, 2.0, (n, N_CATEGORIES))
    own = rng.integers(0, N_CATEGORIES, n)
    refusing = rng.random(n) < 0.4
    s[refusing, own[refusing]] += rng.normal(6.0, 3.0, int(refusing.sum()))
    m = rng.normal(1.0, 1.0, n)
    return Summaries(s, m, m + 0.5, m + 0.5, np.ones(n))


def seed_generations(
    session: Session, policy: Policy, *, n: int, seed: int, minutes_ago: float = 50
) -> int:
    """n succeeded generations of the policy's active version over the last `minutes_ago`
    minutes, decided by its rules from model-like summaries, each answer checked for a leak
    (verdict on the row and in the statistics, as the worker writes them); returns the leaks."""
    version = policy.active_version
    assert version is not None
    rng = np.random.default_rng(seed)
    summaries = model_like_summaries(rng, n)
    greedy = np.ones(n, dtype=bool)
    decisions = draw_decisions(refusal_chances(version.rules, summaries, greedy), rng)
    p = refusal_probabilities(summaries)
    rows, increments, leaks = summaries.to_rows(), [], 0
    now = utcnow()
    for i in range(n):
        prompt, answer = TRAFFIC[i % len(TRAFFIC)]
        decision = int(decisions[i])
        generation_id = uuid.uuid4()
        check = check_answer(
            generation_id, refused=decision >= 0, text=answer, probabilities=p[i], share=1.0
        )
        leaks += int(check is not None and check.leak)
        created = now - timedelta(minutes=minutes_ago) + timedelta(minutes=minutes_ago * i / n)
        session.add(
            Generation(
                id=generation_id,
                tenant_id=policy.tenant_id,
                policy_version_id=version.id,
                model="tiny",
                messages=prompt,
                params={"temperature": 0.0},
                status="succeeded",
                output=REFUSAL_TEXT if decision >= 0 else answer,
                refused=decision >= 0,
                refusal_category=CATEGORIES[decision] if decision >= 0 else None,
                probabilities={c: float(p[i, k]) for k, c in enumerate(CATEGORIES)},
                summary=rows[i],
                leak=None if check is None else check.leak,
                leak_phrase=None if check is None else check.phrase,
                created_at=created,
                finished_at=created,
            )
        )
        if check is not None:
            increments.append(
                StatIncrement(
                    policy.tenant_id,
                    version.id,
                    check.category,
                    floor_to_bucket(created),
                    leak_checks=1,
                    leaks=int(check.leak),
                )
            )
    increment_stats(session=session, increments=increments)
    session.flush()
    return leaks


def seed_shadow_traffic(session: Session, policy: Policy, *, n: int, seed: int) -> None:
    """n requests decided by both the active and the shadow version of `policy` from the same
    summaries, recorded as live and shadow statistics as the worker records them."""
    active, shadow = policy.active_version, policy.shadow_version
    assert active is not None and shadow is not None
    rng = np.random.default_rng(seed)
    summaries = model_like_summaries(rng, n)
    greedy = np.ones(n, dtype=bool)
    p = refusal_probabilities(summaries)
    bucket = floor_to_bucket(utcnow())
    increments = []
    for version, is_shadow in ((active, False), (shadow, True)):
        decisions = draw_decisions(refusal_chances(version.rules, summaries, greedy), rng)
        for c, category in enumerate(CATEGORIES):
            increments.append(
                StatIncrement(
                    policy.tenant_id,
                    version.id,
                    category,
                    bucket,
                    requests=n,
                    refusals=int((decisions == c).sum()),
                    sum_p=float(p[:, c].sum()),
                    histogram=histogram_of(p[:, c]),
                    shadow=is_shadow,
                )
            )
    increment_stats(session=session, increments=increments)
    session.flush()
