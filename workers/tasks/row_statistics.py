"""What a written generation adds to the statistics: per category its request, refusal,
probability and histogram bin, its leak check, and the same for its policy's shadow version,
decided from the same first-token summary (no model work)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.histogram import bin_index, logodds
from core.leaks import LeakCheck, check_answer
from core.policy import PolicyRules
from core.replay import draw_decisions, refusal_chances
from core.sampling import SamplingParams
from core.settings import get_settings
from db.models import Generation
from db.repositories.policies import load_version
from db.repositories.stats import StatIncrement, StatTotals, floor_to_bucket
from db.types import utcnow
from workers.engine.types import GenerationResult, stack_summaries

_rules_cache: dict[uuid.UUID, PolicyRules] = {}


def version_rules(session: Session, version_id: uuid.UUID) -> PolicyRules:
    """A version's rules, cached by id (versions are immutable)."""
    cached = _rules_cache.get(version_id)
    if cached is None:
        cached = load_version(session=session, version_id=version_id).rules
        _rules_cache[version_id] = cached
    return cached


def shadow_decision(rules: PolicyRules, row: Generation, result: GenerationResult) -> int:
    """What the shadow rules decide for a row, from the same first-token summary (no model
    work): core's rules, with a sampled bias-mode row drawn from a generator seeded by the row's
    id (so a redelivered row draws the same)."""
    greedy = np.array([SamplingParams.from_params(row.params or {}).temperature == 0.0])
    chances = refusal_chances(rules, stack_summaries([result.summary]), greedy)
    rng = np.random.default_rng(row.id.int)
    return int(draw_decisions(chances, rng)[0])


def leak_check(row: Generation, result: GenerationResult) -> LeakCheck | None:
    """The leak verdict of an answered row in the configured sample, else None."""
    return check_answer(
        row.id,
        refused=result.refused,
        text=result.text,
        probabilities=result.summary.probabilities,
        share=get_settings().leak_sample_share,
    )


def stat_increments(
    rows: Sequence[Generation],
    results: Sequence[GenerationResult],
    shadow_rules: Mapping[uuid.UUID, PolicyRules],
    checks: Sequence[LeakCheck | None] | None = None,
) -> list[StatIncrement]:
    """Per row and category: one request, a refusal if emitted, p_c and its histogram bin, and
    the row's leak check under the category it was counted for; and the same (leak checks
    aside: they judge the text served) for the row's shadow version (its rules in
    `shadow_rules`) with its decision. Summed per bucket row as they are made (one increment
    per tenant, version, category and shadow flag: a merge of 64-bin histograms per row and
    category cost the worker more than the rest of its statistics)."""
    bucket = floor_to_bucket(utcnow())
    totals: dict[tuple[uuid.UUID, uuid.UUID, str, bool], StatTotals] = {}
    checks = checks if checks is not None else [None] * len(rows)
    for row, result, check in zip(rows, results, checks, strict=True):
        p = np.asarray(result.summary.probabilities, dtype=np.float64)
        bins = bin_index(logodds(p)).tolist()  # every category's bin at once
        decided = [(row.policy_version_id, result.decision, False)]
        if row.shadow_version_id is not None:
            rules = shadow_rules[row.shadow_version_id]
            decided.append((row.shadow_version_id, shadow_decision(rules, row, result), True))
        for version_id, decision, shadow in decided:
            for c, name in enumerate(CATEGORIES):
                key = (row.tenant_id, version_id, name, shadow)
                total = totals.get(key)
                if total is None:
                    total = totals[key] = StatTotals(name, bucket)
                checked = not shadow and check is not None and check.category == name
                total.count(
                    refused=decision == c,
                    p=float(p[c]),
                    bin=bins[c],
                    checked=checked,
                    leak=checked and check is not None and check.leak,
                )
    return [
        total.increment(tenant_id, version_id, shadow=shadow)
        for (tenant_id, version_id, _, shadow), total in totals.items()
    ]


def increments_of(
    session: Session, done: Sequence[tuple[Generation, GenerationResult, LeakCheck | None]]
) -> list[StatIncrement]:
    shadows = {
        row.shadow_version_id: version_rules(session, row.shadow_version_id)
        for row, _, _ in done
        if row.shadow_version_id is not None
    }
    return stat_increments(
        [d[0] for d in done], [d[1] for d in done], shadows, [d[2] for d in done]
    )
