"""Refusal statistics: per tenant, policy version, category, time bucket and role.

A row is live (the decisions served) or shadow (the decisions a policy's shadow version would
have made on the same requests); every reader selects one of the two (`StatsQuery.shadow`).

`increment_stats` adds counts, sums and histograms into bucket rows, creating them as needed,
in one statement for a whole batch: an ``INSERT ... ON CONFLICT DO UPDATE`` over arrays, its rows
in key order. Each row is locked as it is inserted or updated, in that order, so concurrent
workers never lose an increment and never deadlock each other. Histograms are JSON lists of
`HISTOGRAM_BINS` ints, added element by element in the database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVarTuple

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from db.errors import InvalidStats
from db.models import HISTOGRAM_BINS, RefusalStat

BUCKET_SECONDS = 60
#: The columns of a SELECT that `_selected` narrows and returns with the same type.
Ts = TypeVarTuple("Ts")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

StatKey = tuple[uuid.UUID, uuid.UUID, str, datetime, bool]
_KEY_COLUMNS = (
    RefusalStat.tenant_id,
    RefusalStat.policy_version_id,
    RefusalStat.category,
    RefusalStat.bucket_start,
    RefusalStat.shadow,
)

_COUNT_COLUMNS = (
    RefusalStat.requests,
    RefusalStat.refusals,
    RefusalStat.sum_p,
    RefusalStat.leak_checks,
    RefusalStat.leaks,
    RefusalStat.histogram,
)


def upsert_sql(rows: str = "rows", condition: str = "TRUE") -> str:
    """A batch of increments (the JSON parameter named `rows`: `stat_rows`), added into their
    bucket rows (created when missing) if the SQL `condition` holds (a statement that embeds
    this one: `generations.mark_many_succeeded`). The rows come in key order (`ORDER BY`), the
    order every writer locks them in. They travel as one JSON array (psycopg dumping eleven
    array parameters element by element cost more than the rest)."""
    return f"""
    INSERT INTO refusal_stats AS s (tenant_id, policy_version_id, category, bucket_start, shadow,
                                    requests, refusals, sum_p, histogram, leak_checks, leaks)
    SELECT k.tenant_id, k.version_id, k.category, k.bucket_start, k.shadow,
           k.requests, k.refusals, k.sum_p, k.histogram, k.leak_checks, k.leaks
    FROM jsonb_to_recordset(CAST(:{rows} AS jsonb))
         AS k(tenant_id uuid, version_id uuid, category text, bucket_start timestamptz,
              shadow boolean, requests integer, refusals integer, sum_p float8, histogram jsonb,
              leak_checks integer, leaks integer)
    WHERE {condition}
    ORDER BY k.tenant_id, k.version_id, k.category, k.bucket_start, k.shadow
    ON CONFLICT (tenant_id, policy_version_id, category, bucket_start, shadow) DO UPDATE
    SET requests = s.requests + EXCLUDED.requests,
        refusals = s.refusals + EXCLUDED.refusals,
        sum_p = s.sum_p + EXCLUDED.sum_p,
        leak_checks = s.leak_checks + EXCLUDED.leak_checks,
        leaks = s.leaks + EXCLUDED.leaks,
        histogram = (
            SELECT jsonb_agg(a.count::bigint + b.count::bigint ORDER BY a.bin)
            FROM jsonb_array_elements_text(s.histogram) WITH ORDINALITY AS a(count, bin)
            JOIN jsonb_array_elements_text(EXCLUDED.histogram) WITH ORDINALITY AS b(count, bin)
                 USING (bin)
        )
    """


_UPSERT = text(upsert_sql())


def floor_to_bucket(ts: datetime, *, seconds: int = BUCKET_SECONDS) -> datetime:
    """The start of the `seconds`-long bucket holding the aware timestamp `ts` (UTC)."""
    if ts.tzinfo is None:
        raise InvalidStats("bucket timestamps must be timezone-aware")
    offset = (ts.astimezone(UTC) - _EPOCH) // timedelta(seconds=seconds)
    return _EPOCH + timedelta(seconds=offset * seconds)


@dataclass(frozen=True)
class StatIncrement:
    """Amounts to add to one bucket row. An empty `histogram` leaves the histogram as is."""

    tenant_id: uuid.UUID
    policy_version_id: uuid.UUID
    category: str
    bucket_start: datetime
    requests: int = 0
    refusals: int = 0
    sum_p: float = 0.0
    histogram: Sequence[int] = ()
    leak_checks: int = 0
    leaks: int = 0
    shadow: bool = False

    @property
    def key(self) -> StatKey:
        return (
            self.tenant_id,
            self.policy_version_id,
            self.category,
            self.bucket_start.astimezone(UTC),
            self.shadow,
        )


@dataclass
class StatTotals:
    """Summed statistics of a category (over versions, and over buckets when `bucket_start` is
    None)."""

    category: str
    bucket_start: datetime | None = None
    requests: int = 0
    refusals: int = 0
    sum_p: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    leak_checks: int = 0
    leaks: int = 0

    @property
    def refusal_rate(self) -> float | None:
        return self.refusals / self.requests if self.requests else None

    @property
    def leak_rate(self) -> float | None:
        """Share of the checked answers whose text reads as a refusal."""
        return self.leaks / self.leak_checks if self.leak_checks else None

    @property
    def mean_p(self) -> float | None:
        return self.sum_p / self.requests if self.requests else None

    def add(self, row: RefusalStat | StatTotals) -> None:
        self.requests += row.requests
        self.refusals += row.refusals
        self.sum_p += row.sum_p
        self.leak_checks += row.leak_checks
        self.leaks += row.leaks
        self.histogram = add_histograms(self.histogram, row.histogram)

    def count(self, *, refused: bool, p: float, bin: int, checked: bool, leak: bool) -> None:
        """Add one request: its refusal, p_c, the histogram bin of p_c and its leak check."""
        self.requests += 1
        self.refusals += refused
        self.sum_p += p
        self.histogram[bin] += 1
        self.leak_checks += checked
        self.leaks += leak

    def increment(
        self, tenant_id: uuid.UUID, version_id: uuid.UUID, *, shadow: bool
    ) -> StatIncrement:
        """These totals as the increment of one bucket row (`bucket_start` set)."""
        assert self.bucket_start is not None, "an increment belongs to one bucket"
        return StatIncrement(
            tenant_id=tenant_id,
            policy_version_id=version_id,
            category=self.category,
            bucket_start=self.bucket_start,
            requests=self.requests,
            refusals=self.refusals,
            sum_p=self.sum_p,
            histogram=self.histogram,
            leak_checks=self.leak_checks,
            leaks=self.leaks,
            shadow=shadow,
        )


def add_histograms(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Element-wise sum of two histograms of `HISTOGRAM_BINS` bins."""
    if len(a) != HISTOGRAM_BINS or len(b) != HISTOGRAM_BINS:
        raise InvalidStats(f"histograms must have {HISTOGRAM_BINS} bins, got {len(a)}, {len(b)}")
    return [int(x) + int(y) for x, y in zip(a, b, strict=True)]


def _merge(increments: Iterable[StatIncrement]) -> dict[StatKey, StatTotals]:
    merged: dict[StatKey, StatTotals] = {}
    for inc in increments:
        if inc.bucket_start.tzinfo is None:
            raise InvalidStats("bucket_start must be timezone-aware")
        if min(inc.requests, inc.refusals, inc.sum_p, inc.leak_checks, inc.leaks) < 0:
            raise InvalidStats("increments must not be negative")
        if inc.leaks > inc.leak_checks:
            raise InvalidStats("leaks must not exceed leak_checks")
        if inc.histogram and (
            len(inc.histogram) != HISTOGRAM_BINS or any(int(c) < 0 for c in inc.histogram)
        ):
            raise InvalidStats(f"histogram must be {HISTOGRAM_BINS} non-negative counts")
        key = inc.key
        total = merged.setdefault(key, StatTotals(inc.category, key[3]))
        total.requests += inc.requests
        total.refusals += inc.refusals
        total.sum_p += inc.sum_p
        total.leak_checks += inc.leak_checks
        total.leaks += inc.leaks
        if inc.histogram:
            total.histogram = add_histograms(total.histogram, inc.histogram)
    return merged


def increment_stats(*, session: Session, increments: Iterable[StatIncrement]) -> int:
    """Add every increment into its bucket row; returns the number of rows touched.

    Call it in the same transaction that marks the generations succeeded, and only for rows
    whose `mark_succeeded` returned True, so a redelivered task is not counted twice.
    """
    rows = stat_rows(increments)
    if not rows:
        return 0
    session.execute(_UPSERT, {"rows": json.dumps(rows)})
    return len(rows)


def stat_rows(increments: Iterable[StatIncrement]) -> list[dict[str, object]]:
    """The increments merged per bucket row, as the upsert's JSON parameter takes them (one
    execution, one parameter: one cached plan whatever the batch size)."""
    return [
        {
            "tenant_id": str(tenant_id),
            "version_id": str(version_id),
            "category": category,
            "bucket_start": bucket_start.isoformat(),
            "shadow": shadow,
            "requests": t.requests,
            "refusals": t.refusals,
            "sum_p": t.sum_p,
            "histogram": t.histogram,
            "leak_checks": t.leak_checks,
            "leaks": t.leaks,
        }
        for (tenant_id, version_id, category, bucket_start, shadow), t in _merge(increments).items()
    ]


@dataclass(frozen=True)
class StatsQuery:
    """Which statistics to read: a tenant's buckets in [start, end) (no end: up to now), of the
    given policy versions and categories (None: all of them), live or shadow."""

    tenant_id: uuid.UUID
    start: datetime
    end: datetime | None = None
    policy_version_ids: Sequence[uuid.UUID] | None = None
    categories: Sequence[str] | None = None
    shadow: bool = False


def _selected(stmt: Select[*Ts], query: StatsQuery) -> Select[*Ts]:
    """`stmt` narrowed to the rows the query selects (live or shadow ones)."""
    stmt = stmt.where(
        RefusalStat.tenant_id == query.tenant_id,
        RefusalStat.bucket_start >= query.start,
        RefusalStat.shadow.is_(query.shadow),
    )
    if query.end is not None:
        stmt = stmt.where(RefusalStat.bucket_start < query.end)
    if query.policy_version_ids is not None:
        stmt = stmt.where(RefusalStat.policy_version_id.in_(query.policy_version_ids))
    if query.categories is not None:
        stmt = stmt.where(RefusalStat.category.in_(query.categories))
    return stmt


def _rows(session: Session, query: StatsQuery) -> Sequence[RefusalStat]:
    stmt = _selected(select(RefusalStat), query)
    return session.scalars(stmt.order_by(RefusalStat.bucket_start, RefusalStat.category)).all()


def read_buckets(session: Session, query: StatsQuery) -> list[StatTotals]:
    """The query's buckets, summed over its policy versions, ordered by bucket then category."""
    grouped: dict[tuple[datetime, str], StatTotals] = {}
    for row in _rows(session, query):
        key = (row.bucket_start, row.category)
        grouped.setdefault(key, StatTotals(row.category, row.bucket_start)).add(row)
    return [grouped[k] for k in sorted(grouped)]


def category_totals(session: Session, query: StatsQuery) -> dict[str, StatTotals]:
    """Per category, everything the query selects summed (what the auto-tuner reads)."""
    totals: dict[str, StatTotals] = {}
    for row in _rows(session, query):
        totals.setdefault(row.category, StatTotals(row.category)).add(row)
    return totals


@dataclass(frozen=True)
class LeakTotals:
    """Leak checks of one policy version and category over a range."""

    policy_version_id: uuid.UUID
    category: str
    checks: int
    leaks: int

    @property
    def rate(self) -> float | None:
        return self.leaks / self.checks if self.checks else None


def leak_totals(session: Session, query: StatsQuery) -> list[LeakTotals]:
    """Per policy version and category the query selects, the answers checked for a leak and
    the leaks found (only pairs with a check)."""
    columns = select(
        RefusalStat.policy_version_id,
        RefusalStat.category,
        func.sum(RefusalStat.leak_checks),
        func.sum(RefusalStat.leaks),
    )
    stmt = (
        _selected(columns, query)
        .group_by(RefusalStat.policy_version_id, RefusalStat.category)
        .having(func.sum(RefusalStat.leak_checks) > 0)
    )
    return [
        LeakTotals(version_id, category, int(checks), int(leaks))
        for version_id, category, checks, leaks in session.execute(stmt)
    ]


def leak_counts_by_category(session: Session, *, since: datetime) -> dict[str, tuple[int, int]]:
    """Every tenant's (checks, leaks) per category since `since`, for the tenant-agnostic
    `/metrics` (no tenant or policy label ever leaves the database this way)."""
    stmt = (
        select(RefusalStat.category, func.sum(RefusalStat.leak_checks), func.sum(RefusalStat.leaks))
        .where(RefusalStat.bucket_start >= since, RefusalStat.shadow.is_(False))
        .group_by(RefusalStat.category)
    )
    return {c: (int(n), int(k)) for c, n, k in session.execute(stmt)}
