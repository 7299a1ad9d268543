"""Leak monitoring of answered requests: which ones are checked, and under which category.

A "leak" is an answer that the first token sent to `[respond]` but whose text refuses anyway
(`core.refusal_text`). Checking is cheap but its examples are kept for an admin to read, so only
a configurable share of answered requests is checked (`RCS_LEAK_SAMPLE_SHARE`). The choice is a
pure function of the generation id: a redelivered task makes the same choice, and no state is
shared between workers. A checked answer is counted under the category it came nearest to
refusing as (its largest first-token refusal probability): that is the category whose
threshold or bias let it through.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from core.categories import CATEGORIES
from core.refusal_text import find_refusal

_SCALE = float(2**64)


def is_sampled(generation_id: uuid.UUID, share: float) -> bool:
    """Whether this generation is in the checked `share` (0: none, 1: every one)."""
    return int.from_bytes(generation_id.bytes[:8], "big") / _SCALE < share


def nearest_category(probabilities: Sequence[float]) -> str:
    """The category with the largest first-token refusal probability (`CATEGORIES` order)."""
    best = max(range(len(CATEGORIES)), key=lambda c: float(probabilities[c]))
    return CATEGORIES[best]


@dataclass(frozen=True)
class LeakCheck:
    """The verdict on one checked answer: its category, and the refusal phrase found, if any."""

    category: str
    phrase: str | None

    @property
    def leak(self) -> bool:
        return self.phrase is not None


#: Longest matched phrase kept on a generation row (the column's width).
MAX_PHRASE_CHARS = 200


def check_answer(
    generation_id: uuid.UUID,
    *,
    refused: bool,
    text: str,
    probabilities: Sequence[float],
    share: float,
) -> LeakCheck | None:
    """Check an answered, sampled generation's text; None when refused or not sampled."""
    if refused or not is_sampled(generation_id, share):
        return None
    found = find_refusal(text)
    phrase = found.phrase[:MAX_PHRASE_CHARS] if found is not None else None
    return LeakCheck(nearest_category(probabilities), phrase)
