"""The per-category view's choices: ranges, bucket sizes and the range they give (the data behind
the view is `services.statistics.category_series`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.histogram import HISTOGRAM_BINS

RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
BUCKETS: dict[str, int] = {
    "1 min": 60,
    "5 min": 300,
    "15 min": 900,
    "1 hour": 3600,
    "6 hours": 21600,
    "1 day": 86400,
}
MAX_POINTS = 2000


def parse_range(
    range_key: str, bucket_seconds: int, now: datetime
) -> tuple[datetime, datetime, str]:
    """[start, end) for a range key; falls back to 24h and says so when the bucket would give
    more than `MAX_POINTS` points."""
    span = RANGES.get(range_key, RANGES["24h"])
    note = "" if range_key in RANGES else "Unknown range; showing the last 24 hours."
    if span.total_seconds() / bucket_seconds > MAX_POINTS:
        note = f"That bucket would draw more than {MAX_POINTS} points; pick a larger one."
    end = now.astimezone(UTC)
    return end - span, end, note


def empty_histogram() -> list[int]:
    return [0] * HISTOGRAM_BINS
