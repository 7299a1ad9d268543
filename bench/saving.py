"""Where a benchmark keeps its figures: one JSON file under bench/results, said when saved.

A figures' object also gets the machine's speed, measured as it is saved (the benchmark's own
processes done): this machine's speed moves between sessions by up to 2-3x (docs/scaling.md,
docs/models.md), so figures of different sessions are compared at the speed they ran at.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.settings import PROJECT_ROOT
from workers.training.machine_speed import measure_speed

RESULTS = PROJECT_ROOT / "bench" / "results"


def save_results(name: str, results: Any, *, default: Callable[[Any], Any] | None = None) -> Path:
    """Write `results` to bench/results/`name` (indented JSON) and print where it went; an object
    gets `machine_speed` (`workers/training/machine_speed.py`) unless it has one."""
    if isinstance(results, dict) and "machine_speed" not in results:
        results = {**results, "machine_speed": measure_speed()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(results, indent=2, default=default) + "\n")
    print(f"saved {path.relative_to(PROJECT_ROOT)}")
    return path
