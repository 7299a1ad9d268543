"""A written batch's statistics: summed per bucket row as the rows are read, equal to adding
each row's per-category increment on its own."""

from __future__ import annotations

import uuid

from core.categories import CATEGORIES
from core.histogram import histogram_of
from core.leaks import LeakCheck
from db.models import Generation
from db.repositories.stats import StatIncrement
from workers.engine.types import FirstTokenSummary, GenerationResult
from workers.tasks.row_statistics import stat_increments


def _result(probabilities: tuple[float, ...], decision: int) -> GenerationResult:
    summary = FirstTokenSummary(
        s=(0.0,) * len(CATEGORIES),
        m=0.0,
        l1=0.0,
        lt=0.0,
        temperature=1.0,
        probabilities=probabilities,
    )
    return GenerationResult(
        request_id=None,
        summary=summary,
        decision=decision,
        first_token_id=0,
        text="an answer",
        token_ids=(0, 1),
        prompt_tokens=3,
        completion_tokens=2,
        finish_reason="stop",
        seed=None,
        first_token_ms=1.0,
        total_ms=2.0,
    )


def test_a_batch_adds_per_bucket_row_what_its_rows_add_one_by_one() -> None:
    tenants = [uuid.uuid4(), uuid.uuid4()]
    versions = {t: uuid.uuid4() for t in tenants}
    rows, results, checks = [], [], []
    for i in range(7):
        tenant = tenants[i % 2]
        rows.append(
            Generation(id=uuid.uuid4(), tenant_id=tenant, policy_version_id=versions[tenant])
        )
        p = tuple(
            (0.9 if c == i % len(CATEGORIES) else 0.001 * (i + 1) * (c + 1)) for c in range(5)
        )
        results.append(_result(p, decision=i % len(CATEGORIES) if i % 3 == 0 else -1))
        checks.append(LeakCheck("safety", "I can't" if i == 4 else None) if i % 2 == 0 else None)

    got = stat_increments(rows, results, {}, checks)

    expected: dict[tuple[uuid.UUID, str], dict[str, object]] = {}
    for row, result, check in zip(rows, results, checks, strict=True):
        for c, name in enumerate(CATEGORIES):
            p = result.summary.probabilities[c]
            total = expected.setdefault(
                (row.tenant_id, name),
                {
                    "requests": 0,
                    "refusals": 0,
                    "sum_p": 0.0,
                    "checks": 0,
                    "leaks": 0,
                    "histogram": [0] * 64,
                },
            )
            total["requests"] += 1
            total["refusals"] += int(result.decision == c)
            total["sum_p"] += p
            checked = check is not None and check.category == name
            total["checks"] += int(checked)
            total["leaks"] += int(checked and check.leak)
            total["histogram"] = [
                a + b for a, b in zip(total["histogram"], histogram_of([p]), strict=True)
            ]
    assert len(got) == len(expected) == 2 * len(CATEGORIES)
    buckets = {inc.bucket_start for inc in got}
    assert len(buckets) == 1
    for inc in got:
        assert isinstance(inc, StatIncrement) and not inc.shadow
        assert inc.policy_version_id == versions[inc.tenant_id]
        want = expected[(inc.tenant_id, inc.category)]
        assert (inc.requests, inc.refusals, inc.leak_checks, inc.leaks) == (
            want["requests"],
            want["refusals"],
            want["checks"],
            want["leaks"],
        )
        assert inc.sum_p == want["sum_p"]  # summed in the same (row) order: equal to the bit
        assert list(inc.histogram) == want["histogram"]
    assert sum(inc.leaks for inc in got) == 1
