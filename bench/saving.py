"""Where a benchmark keeps its figures: one JSON file under bench/results, said when saved."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"


def save_results(name: str, results: Any, *, default: Callable[[Any], Any] | None = None) -> Path:
    """Write `results` to bench/results/`name` (indented JSON) and print where it went."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(results, indent=2, default=default) + "\n")
    print(f"saved {path.relative_to(PROJECT_ROOT)}")
    return path
