"""Chart SVGs and the signed session cookie, without a server."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from api.dashboard.auth import csrf_token, decode_session, encode_session, new_session
from api.dashboard.charts import curve_chart, histogram_chart, rate_chart
from core.histogram import HISTOGRAM_BINS

SECRET = "secret-0123456789abcdef"
END = datetime(2026, 1, 2, tzinfo=UTC)
START = END - timedelta(days=1)


def test_rate_chart_draws_one_point_per_bucket_and_clips_markers_to_the_range() -> None:
    points = [(START + timedelta(hours=h), h / 24, 10) for h in range(24)]
    svg = rate_chart(
        points,
        start=START,
        end=END,
        targets=[(START - timedelta(days=3), 0.3), (START + timedelta(hours=6), 0.5)],
        markers=[(START - timedelta(days=3), "v1"), (START + timedelta(hours=6), "v2")],
    )
    assert svg.count('class="pt"') == 24 and 'data-points="24"' in svg
    assert svg.count('class="marker"') == 1  # v1 lies before the range
    assert svg.count('class="target"') == 2  # the step from v1 and the one from v2


def test_empty_charts_say_so() -> None:
    assert "No traffic in this range" in rate_chart([], start=START, end=END)
    assert "No scores recorded" in histogram_chart([0] * HISTOGRAM_BINS, threshold=0.5)
    assert "No curve" in curve_chart([], target=0.2, chosen=None, x_label="τ")


def test_histogram_colours_the_bins_that_would_refuse() -> None:
    counts = [0] * HISTOGRAM_BINS
    counts[10], counts[40] = 5, 7  # log-odds about -10.75 and +4.25
    svg = histogram_chart(counts, threshold=0.5)
    assert svg.count('class="hbar"') == 2
    assert svg.count("#dc2626") == 1 and 'class="threshold"' in svg
    assert 'data-total="12"' in svg


def test_text_in_charts_is_escaped() -> None:
    svg = rate_chart([], start=START, end=END, markers=[(START + timedelta(hours=1), "<b>")])
    assert "<b>" not in svg and "&lt;b&gt;" in svg


def test_session_cookie_round_trips_and_rejects_tampering_and_age() -> None:
    session = new_session(uuid.uuid4(), uuid.uuid4())
    value = encode_session(session, SECRET)
    assert decode_session(value, SECRET) == session
    assert decode_session(value, SECRET + "x") is None
    body, _, sig = value.partition(".")
    assert decode_session(body[:-2] + "AA." + sig, SECRET) is None
    assert decode_session("garbage", SECRET) is None
    assert decode_session(value, SECRET, now=time.time() + 9 * 3600) is None


def test_csrf_tokens_are_bound_to_the_session() -> None:
    a, b = new_session(uuid.uuid4(), None), new_session(uuid.uuid4(), None)
    assert csrf_token(a, SECRET) == csrf_token(a, SECRET)
    assert csrf_token(a, SECRET) != csrf_token(b, SECRET)
