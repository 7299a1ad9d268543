"""Engine summaries as the JSON rows stored in `generations.summary` and `calibration_items`."""

from __future__ import annotations

import math
from typing import Any


def summary_json(summary: Any) -> dict[str, Any]:
    """A `FirstTokenSummary` in `core.summary.Summaries.from_rows` form (-inf logits as null)."""
    return {
        "s": [float(v) if math.isfinite(v) else None for v in summary.s],
        "m": float(summary.m),
        "l1": float(summary.l1),
        "lt": float(summary.lt),
        "temperature": float(summary.temperature),
    }
