"""Precision and recall of the refusal-text detector on hand-labelled answers.

    .venv/bin/python -m bench.refusal_text

Three hand-written sets in tests/data: `refusal_text_labelled.jsonl` (the development set the
first patterns were written against), `refusal_text_heldout.jsonl` (written once those were
frozen; its misses then guided the second version) and `refusal_text_heldout2.jsonl` (written
before the second version, measured once after it, never tuned on). Each answer is scored by
`core.refusal_text` and by the phrase list it replaced (the baseline, kept here only to
compare). Saves bench/results/refusal-text.json.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.saving import save_results
from core.refusal_text import refuses_in_text
from core.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / "tests" / "data"
SETS = {
    "development": "refusal_text_labelled.jsonl",
    "held-out": "refusal_text_heldout.jsonl",
    "held-out 2": "refusal_text_heldout2.jsonl",
}
#: The detector before this change (workers/training/after_token.py): single words and phrases.
BASELINE = re.compile(
    r"\b(can't|cannot|can not|unable to|not able to|won't|isn't true|is not true|not the case|"
    r"premise|don't have access|i'm an ai|as an ai|i'm sorry|no one knows|nobody knows)\b",
    re.IGNORECASE,
)


def load(path: Path) -> list[tuple[str, bool]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(str(r["text"]), bool(r["refuses"])) for r in rows]


def score(rows: list[tuple[str, bool]], detect: Callable[[str], bool]) -> dict[str, Any]:
    """Confusion counts, precision and recall of `detect` (positive: the answer refuses)."""
    tp = sum(1 for text, label in rows if label and detect(text))
    fp = sum(1 for text, label in rows if not label and detect(text))
    fn = sum(1 for text, label in rows if label and not detect(text))
    return {
        "n": len(rows),
        "refusing": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "missed": [text for text, label in rows if label and not detect(text)],
        "false_alarms": [text for text, label in rows if not label and detect(text)],
    }


def microseconds_per_answer(texts: list[str], detect: Callable[[str], object]) -> float:
    """Mean time of one check over `texts`, repeated until it has run for about a second."""
    rounds, started = 0, time.perf_counter()
    while time.perf_counter() - started < 1.0:
        for text in texts:
            detect(text)
        rounds += 1
    return (time.perf_counter() - started) / (rounds * len(texts)) * 1e6


def main() -> None:
    report: dict[str, Any] = {}
    for name, file in SETS.items():
        rows = load(DATA / file)
        report[name] = {
            "detector": score(rows, refuses_in_text),
            "baseline": score(rows, lambda t: bool(BASELINE.search(t))),
        }
        for which in ("detector", "baseline"):
            r = report[name][which]
            print(
                f"{name:12s} {which:9s} n={r['n']:3d} refusing={r['refusing']:3d} "
                f"precision={r['precision']:.3f} recall={r['recall']:.3f} "
                f"(tp {r['tp']}, fp {r['fp']}, fn {r['fn']})"
            )
    texts = [text for file in SETS.values() for text, _ in load(DATA / file)]
    ours = microseconds_per_answer(texts, refuses_in_text)
    old = microseconds_per_answer(texts, BASELINE.search)
    report["cost"] = {"detector_us": ours, "baseline_us": old, "ratio": ours / old}
    print(f"cost per answer: detector {ours:.1f} us, baseline {old:.1f} us ({ours / old:.1f}x)")
    save_results("refusal-text.json", report)


if __name__ == "__main__":
    main()
