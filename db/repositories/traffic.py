"""A window of a tenant's served traffic as arrays: first-token summaries and served decisions.

What-if replay reads every succeeded generation of a window, so the read is shaped for volume:
it takes each row's summary as numbers from `generations.first_token` (a float8 array that
PostgreSQL computes from the stored summary, no JSON parsed at read time) and aggregates each
column into one binary string (`float8send`/`int2send`, big-endian), which numpy reads without
creating a Python object per value. One aggregate sees the rows in one order, so the columns
line up. The (tenant_id, created_at) index selects the window.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.summary import N_CATEGORIES, Summaries


@dataclass(frozen=True, eq=False)
class WindowTraffic:
    """The window's requests: summaries, whether each was decoded greedily (temperature 0), and
    the decision actually served (index into `CATEGORIES`, -1 respond)."""

    summaries: Summaries
    greedy: np.ndarray  # (N,) bool
    served: np.ndarray  # (N,) int

    def __len__(self) -> int:
        return len(self.summaries)


def _float_column(expression: str) -> str:
    return f"string_agg(float8send({expression}), ''::bytea)"


_CATEGORY_ARRAY = "ARRAY[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]::text[]"
#: `first_token` holds s_1..s_C, m, L_1, L_T, temperature (1-based in SQL).
_COLUMNS = [
    *(_float_column(f"f[{i}]") for i in range(1, N_CATEGORIES + 5)),
    # A row without a stored temperature took the default: greedy (core.sampling).
    "string_agg(int2send((coalesce((params->>'temperature')::float8, 0) = 0)::int::int2),"
    " ''::bytea)",
    "string_agg(int2send((coalesce(array_position("
    f"{_CATEGORY_ARRAY}, refusal_category::text), 0) - 1)::int2), ''::bytea)",
    "count(*)",
]
_WINDOW_QUERY = text(
    f"SELECT {', '.join(_COLUMNS)} FROM ("  # built from constants only
    " SELECT first_token AS f, params, refusal_category FROM generations"
    " WHERE tenant_id = :tenant_id AND created_at >= :start AND created_at < :end"
    " AND status = 'succeeded' AND first_token IS NOT NULL"
    " AND policy_version_id = ANY(:version_ids)"
    " LIMIT :limit) AS window_rows"
)


class WindowTooLarge(Exception):
    """The window holds more requests than one replay reads."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the window holds more than {limit} requests")
        self.limit = limit


def _array(blob: bytes | None, dtype: str) -> np.ndarray:
    return np.frombuffer(blob or b"", dtype=dtype)


def window_traffic(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy_version_ids: Sequence[uuid.UUID],
    start: datetime,
    end: datetime,
    limit: int,
) -> WindowTraffic:
    """The tenant's succeeded generations created in [start, end) under the given policy
    versions; `WindowTooLarge` when there are more than `limit`."""
    row = session.execute(
        _WINDOW_QUERY,
        {
            "tenant_id": tenant_id,
            "start": start,
            "end": end,
            "version_ids": list(policy_version_ids),
            "limit": limit + 1,
        },
    ).one()
    n = int(row[-1])
    if n > limit:
        raise WindowTooLarge(limit)
    floats = [_array(blob, ">f8").astype(np.float64) for blob in row[: N_CATEGORIES + 4]]
    s = np.stack(floats[:N_CATEGORIES], axis=1) if n else np.zeros((0, N_CATEGORIES))
    m, l1, lt, temperature = floats[N_CATEGORIES:]
    summaries = Summaries(s=s, m=m, l1=l1, lt=lt, temperature=temperature)
    greedy = _array(row[N_CATEGORIES + 4], ">i2") == 1
    served = _array(row[N_CATEGORIES + 5], ">i2").astype(np.int64)
    return WindowTraffic(summaries, greedy, served)
