"""Inline SVG charts drawn in Python: refusal rate over time, score histogram, calibration curve.

No JavaScript and nothing fetched at run time: each function returns an `<svg>` string ready to
embed. Data points carry `class="pt"` and a `<title>` (the browser shows it on hover); an empty
series draws the axes with a message instead of a blank box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from core.histogram import HISTOGRAM_BINS, LOGODDS_MAX, LOGODDS_MIN

RATE_COLOR = "#2563eb"
TARGET_COLOR = "#ea580c"
MARKER_COLOR = "#7c3aed"
REFUSE_COLOR = "#dc2626"
RESPOND_COLOR = "#94a3b8"
GRID_COLOR = "#e2e8f0"
TEXT_COLOR = "#475569"
P_TICKS = (0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999)


@dataclass(frozen=True)
class Frame:
    """The plot area inside an SVG of `width` x `height`, and the data ranges it maps."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float = 0.0
    y1: float = 1.0
    # Room around the plot area for the axis labels: the same on every chart, so not a field.
    left, right, top, bottom = 52, 16, 22, 34

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (value - self.y0) / span * self.plot_height

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right


def _svg(frame: Frame, label: str, body: list[str], kind: str, **data: object) -> Markup:
    attrs = " ".join(f'data-{k.replace("_", "-")}="{escape(str(v))}"' for k, v in data.items())
    return Markup(
        f'<svg class="chart {kind}" viewBox="0 0 {frame.width} {frame.height}" '
        f'role="img" aria-label="{escape(label)}" {attrs} '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "middle", cls: str = "lbl") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}" '
        f'fill="{TEXT_COLOR}" font-size="11">{escape(text)}</text>'
    )


def _y_axis_percent(frame: Frame) -> list[str]:
    out = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = frame.y(tick)
        out.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{GRID_COLOR}"/>'
        )
        out.append(_text(frame.left - 6, y + 4, f"{tick:.0%}", anchor="end"))
    return out


def _empty(frame: Frame, message: str) -> str:
    cx = frame.left + frame.plot_width / 2
    cy = frame.top + frame.plot_height / 2
    return _text(cx, cy, message, cls="empty")


def _time_label(at: datetime, span_seconds: float) -> str:
    if span_seconds <= 2 * 86400:
        return at.strftime("%H:%M")
    return at.strftime("%d %b")


def rate_chart(
    points: Sequence[tuple[datetime, float, int]],
    *,
    start: datetime,
    end: datetime,
    targets: Sequence[tuple[datetime, float | None]] = (),
    markers: Sequence[tuple[datetime, str]] = (),
    width: int = 640,
    height: int = 230,
) -> Markup:
    """Refusal rate per bucket (point: start, rate, requests) with the target as a step line and
    a vertical marker where each policy version was activated."""
    t0, t1 = start.timestamp(), end.timestamp()
    frame = Frame(width, height, t0, t1)
    body = _y_axis_percent(frame)
    span = t1 - t0
    for i in range(6):
        t = t0 + span * i / 5
        body.append(
            _text(frame.x(t), height - 12, _time_label(datetime.fromtimestamp(t, UTC), span))
        )
    # Target: a step function of the active version's target over time.
    steps = [(max(at.timestamp(), t0), value) for at, value in targets if at.timestamp() < t1]
    ends = [at for at, _ in steps[1:]] + [t1]
    for (since, value), until in zip(steps, ends[: len(steps)], strict=True):
        if value is None or until <= since:
            continue
        y = frame.y(value)
        body.append(
            f'<line class="target" x1="{frame.x(since):.1f}" x2="{frame.x(until):.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{TARGET_COLOR}" stroke-width="2" '
            f'stroke-dasharray="6 4"><title>target {value:.0%}</title></line>'
        )
    for at, label in markers:
        ts = at.timestamp()
        if not t0 <= ts <= t1:
            continue
        x = frame.x(ts)
        body.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" '
            f'y2="{height - frame.bottom}" stroke="{MARKER_COLOR}" stroke-dasharray="2 3">'
            f"<title>{escape(label)} activated {at:%Y-%m-%d %H:%M} UTC</title></line>"
        )
        body.append(
            f'<text x="{x + 3:.1f}" y="{frame.top - 6}" fill="{MARKER_COLOR}" '
            f'font-size="11" class="marker-label">{escape(label)}</text>'
        )
    coords = [(frame.x(at.timestamp()), frame.y(rate), at, rate, n) for at, rate, n in points]
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, *_ in coords)
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{RATE_COLOR}" stroke-width="2"/>'
        )
    for x, y, at, rate, n in coords:
        body.append(
            f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{RATE_COLOR}">'
            f"<title>{at:%Y-%m-%d %H:%M} UTC: {rate:.1%} of {n} requests</title></circle>"
        )
    if not coords:
        body.append(_empty(frame, "No traffic in this range"))
    return _svg(frame, "refusal rate over time", body, "rate-chart", points=len(coords))


def logodds_of(p: float) -> float:
    q = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(q / (1 - q))


def histogram_chart(
    counts: Sequence[int],
    *,
    threshold: float | None,
    width: int = 640,
    height: int = 230,
) -> Markup:
    """Counts of the first-token refusal score in log-odds bins; bins at or above the threshold
    (the ones that would refuse) in red, the threshold as a vertical line."""
    top = max(counts) if counts else 0
    frame = Frame(width, height, LOGODDS_MIN, LOGODDS_MAX, 0, max(top, 1))
    body: list[str] = []
    for frac in (0.5, 1.0):
        y = frame.y(frame.y1 * frac)
        body.append(
            f'<line x1="{frame.left}" x2="{width - frame.right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOR}"/>'
        )
        body.append(_text(frame.left - 6, y + 4, f"{frame.y1 * frac:,.0f}", anchor="end"))
    body.append(_text(frame.left - 6, frame.y(0) + 4, "0", anchor="end"))
    cut = logodds_of(threshold) if threshold is not None else None
    width_bin = (LOGODDS_MAX - LOGODDS_MIN) / HISTOGRAM_BINS
    bar_px = frame.plot_width / HISTOGRAM_BINS
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        lo = LOGODDS_MIN + i * width_bin
        color = REFUSE_COLOR if cut is not None and lo + width_bin / 2 >= cut else RESPOND_COLOR
        y = frame.y(count)
        p_lo, p_hi = 1 / (1 + math.exp(-lo)), 1 / (1 + math.exp(-(lo + width_bin)))
        body.append(
            f'<rect class="hbar" x="{frame.x(lo) + 0.5:.1f}" y="{y:.1f}" '
            f'width="{max(bar_px - 1, 1):.1f}" height="{frame.y(0) - y:.1f}" fill="{color}">'
            f"<title>p in [{p_lo:.4f}, {p_hi:.4f}): {count}</title></rect>"
        )
    for p in P_TICKS:
        body.append(_text(frame.x(logodds_of(p)), height - 12, f"{p:g}"))
    if cut is not None:
        x = frame.x(min(max(cut, LOGODDS_MIN), LOGODDS_MAX))
        body.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top - 4}" '
            f'y2="{height - frame.bottom}" stroke="{TARGET_COLOR}" stroke-width="2"/>'
        )
        body.append(
            f'<text x="{x + 4:.1f}" y="{frame.top + 6}" fill="{TARGET_COLOR}" font-size="12">'
            f"τ = {threshold:.3g}</text>"
        )
    if top == 0:
        body.append(_empty(frame, "No scores recorded in this range"))
    return _svg(frame, "first-token refusal score histogram", body, "histogram", total=sum(counts))


def curve_chart(
    curve: Sequence[Sequence[float]],
    *,
    target: float | None,
    chosen: tuple[float, float] | None,
    x_label: str,
    width: int = 420,
    height: int = 220,
) -> Markup:
    """A calibration curve (value -> refusal rate) with the target line and the chosen point."""
    xs = [float(p[0]) for p in curve] + ([chosen[0]] if chosen else [])
    finite = [x for x in xs if math.isfinite(x)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    frame = Frame(width, height, lo, hi)
    body = _y_axis_percent(frame)
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        body.append(_text(frame.x(v), height - 14, f"{v:.3g}"))
    body.append(_text(frame.left + frame.plot_width / 2, height - 1, x_label))
    pts = [(frame.x(float(x)), frame.y(float(r))) for x, r in curve if math.isfinite(float(x))]
    if len(pts) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        body.append(
            f'<polyline class="curve" points="{path}" fill="none" stroke="{RATE_COLOR}" '
            f'stroke-width="2"/>'
        )
    if target is not None:
        y = frame.y(target)
        body.append(
            f'<line class="target" x1="{frame.left}" x2="{width - frame.right}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{TARGET_COLOR}" stroke-width="2" stroke-dasharray="6 4">'
            f"<title>target {target:.1%}</title></line>"
        )
    if chosen is not None and math.isfinite(chosen[0]):
        cx, cy = frame.x(chosen[0]), frame.y(chosen[1])
        body.append(
            f'<circle class="chosen" cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{TARGET_COLOR}" '
            f'stroke="white" stroke-width="2"><title>chosen {chosen[0]:.4g}: rate '
            f"{chosen[1]:.1%}</title></circle>"
        )
    if not pts:
        body.append(_empty(frame, "No curve in this result"))
    return _svg(frame, "calibration curve", body, "curve-chart", points=len(pts))
