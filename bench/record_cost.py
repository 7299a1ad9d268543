"""CPU time of the worker's write of finished rows (`mark_many_succeeded` and `increment_stats`
in one transaction, as `RowRecorder` runs them) with the rows as one JSON parameter, against
the array parameters they replaced, in this process, alternating blocks of transactions.

    .venv/bin/python -m bench.record_cost [--blocks 6] [--block 100] [--rows 4]

A temporary migrated database on the suite's PostgreSQL. Process CPU time (the client side:
SQLAlchemy, psycopg's parameter dumping, building the parameters); the server's work is
nearly the same either way. Saves bench/results/record-cost.json.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.paired_blocks import cpu_ms_per, paired_blocks, queued_rows
from core.categories import CATEGORIES
from db.models import HISTOGRAM_BINS
from db.repositories.generations import Succeeded, mark_many_succeeded
from db.repositories.stats import StatIncrement, _merge, floor_to_bucket, increment_stats
from db.repositories.transitions import ACTIVE_STATUSES
from db.session import session_scope
from db.types import utcnow

Record = Callable[[Session, Sequence[Succeeded], Sequence[StatIncrement]], None]

#: The write before: the same statements over one array parameter per column.
_ARRAY_MARK = text(
    """
    UPDATE generations AS g
    SET status = 'succeeded', finished_at = :now, error = NULL, output = u.output,
        refused = u.refused, refusal_category = u.refusal_category,
        probabilities = u.probabilities, summary = u.summary, prompt_tokens = u.prompt_tokens,
        completion_tokens = u.completion_tokens, leak = u.leak, leak_phrase = u.leak_phrase
    FROM unnest(CAST(:ids AS uuid[]), CAST(:outputs AS text[]), CAST(:refused AS boolean[]),
                CAST(:categories AS text[]), CAST(CAST(:probabilities AS text[]) AS jsonb[]),
                CAST(CAST(:summaries AS text[]) AS jsonb[]), CAST(:prompt_tokens AS integer[]),
                CAST(:completion_tokens AS integer[]), CAST(:leaks AS boolean[]),
                CAST(:leak_phrases AS text[]))
         AS u(id, output, refused, refusal_category, probabilities, summary, prompt_tokens,
              completion_tokens, leak, leak_phrase)
    WHERE g.id = u.id AND g.status = ANY(CAST(:active AS text[]))
    RETURNING g.id, row_to_json(g)::text
    """
)
_ARRAY_UPSERT = text(
    """
    INSERT INTO refusal_stats AS s (tenant_id, policy_version_id, category, bucket_start, shadow,
                                    requests, refusals, sum_p, histogram, leak_checks, leaks)
    SELECT * FROM unnest(CAST(:tenants AS uuid[]), CAST(:versions AS uuid[]),
                CAST(:categories AS text[]), CAST(:buckets AS timestamptz[]),
                CAST(:shadows AS boolean[]), CAST(:requests AS integer[]),
                CAST(:refusals AS integer[]), CAST(:sum_p AS float8[]),
                CAST(CAST(:histograms AS text[]) AS jsonb[]), CAST(:leak_checks AS integer[]),
                CAST(:leaks AS integer[]))
    ON CONFLICT (tenant_id, policy_version_id, category, bucket_start, shadow) DO UPDATE
    SET requests = s.requests + EXCLUDED.requests, refusals = s.refusals + EXCLUDED.refusals,
        sum_p = s.sum_p + EXCLUDED.sum_p
    """
)


def array_record(
    session: Session, rows: Sequence[Succeeded], increments: Sequence[StatIncrement]
) -> None:
    moved = session.execute(
        _ARRAY_MARK,
        {
            "now": utcnow(),
            "active": list(ACTIVE_STATUSES),
            "ids": [r.generation_id for r in rows],
            "outputs": [r.output for r in rows],
            "refused": [r.refused for r in rows],
            "categories": [r.refusal_category for r in rows],
            "probabilities": [json.dumps(r.probabilities) for r in rows],
            "summaries": [json.dumps(r.summary) for r in rows],
            "prompt_tokens": [r.prompt_tokens for r in rows],
            "completion_tokens": [r.completion_tokens for r in rows],
            "leaks": [r.leak for r in rows],
            "leak_phrases": [r.leak_phrase for r in rows],
        },
    ).all()
    assert len(moved) == len(rows)
    merged = _merge(increments)  # as increment_stats did before
    keys, totals = list(merged), list(merged.values())
    tenants, versions, categories, buckets, shadows = (list(c) for c in zip(*keys, strict=True))
    session.execute(
        _ARRAY_UPSERT,
        {
            "tenants": tenants,
            "versions": versions,
            "categories": categories,
            "buckets": buckets,
            "shadows": shadows,
            "requests": [t.requests for t in totals],
            "refusals": [t.refusals for t in totals],
            "sum_p": [t.sum_p for t in totals],
            "histograms": [json.dumps(t.histogram) for t in totals],
            "leak_checks": [t.leak_checks for t in totals],
            "leaks": [t.leaks for t in totals],
        },
    )


def json_record(
    session: Session, rows: Sequence[Succeeded], increments: Sequence[StatIncrement]
) -> None:
    assert len(mark_many_succeeded(session=session, rows=rows)) == len(rows)
    increment_stats(session=session, increments=increments)


def _batch(
    ids: list[uuid.UUID], tenant_id: uuid.UUID, version_id: uuid.UUID
) -> tuple[list[Succeeded], list[StatIncrement]]:
    """Finished rows as the recorder writes them, with one increment per row and category (a
    minute bucket per row, so no key repeats within one statement)."""
    p = {c: 1.0 / len(CATEGORIES) for c in CATEGORIES}
    rows = [
        Succeeded(i, "An answer of about sixteen tokens, as the tiny model writes.", False, None, p)
        for i in ids
    ]
    bucket = floor_to_bucket(utcnow())
    increments = [
        StatIncrement(
            tenant_id=tenant_id,
            policy_version_id=version_id,
            category=c,
            bucket_start=bucket - timedelta(minutes=j),
            requests=1,
            refusals=0,
            sum_p=1.0 / len(CATEGORIES),
            histogram=[1] + [0] * (HISTOGRAM_BINS - 1),
        )
        for j in range(len(ids))
        for c in CATEGORIES
    ]
    return rows, increments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6, help="blocks per variant")
    parser.add_argument("--block", type=int, default=100, help="transactions per block")
    parser.add_argument("--rows", type=int, default=4, help="rows per transaction")
    args = parser.parse_args()
    variants: dict[str, Record] = {"array parameters": array_record, "one JSON": json_record}
    total = args.blocks * args.block * args.rows * len(variants)
    with queued_rows("record", total) as rows:

        def write_block(name: str) -> float:
            batches = [
                _batch(rows.take(args.rows), rows.tenant_id, rows.version_id)
                for _ in range(args.block)
            ]

            def write(batch: tuple[list[Succeeded], list[StatIncrement]]) -> None:
                with session_scope(rows.factory) as session:
                    variants[name](session, *batch)

            return cpu_ms_per(write, batches)

        before, after = variants
        paired_blocks(
            before, after, args.blocks, write_block, unit="write", results="record-cost.json"
        )


if __name__ == "__main__":
    main()
