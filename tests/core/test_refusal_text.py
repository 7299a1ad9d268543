"""The refusal-text detector: constructions, not lone words, on the hand-labelled answers."""

from __future__ import annotations

import json

import pytest

from core.refusal_text import find_refusal, refuses_in_text
from core.settings import PROJECT_ROOT

LABELLED = PROJECT_ROOT / "tests" / "data" / "refusal_text_labelled.jsonl"


def _rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]


def test_the_labelled_set_has_over_100_distinct_answers_of_both_kinds() -> None:
    rows = _rows()
    assert len(rows) >= 100
    assert len({r["text"] for r in rows}) == len(rows)
    refusing = sum(1 for r in rows if r["refuses"] is True)
    assert 40 <= refusing <= len(rows) - 40


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ("[respond]I can't help with that.", "declines"),
        ("[respond]That premise is false: he never did.", "false premise"),
        ("As an AI, I don't have a family.", "not a person"),
        ("Could you clarify which file you mean?", "unclear"),
        ("Nobody knows what is inside a black hole.", "unknowable"),
    ],
)
def test_refusals_are_flagged_with_their_kind_and_phrase(answer: str, kind: str) -> None:
    found = find_refusal(answer)
    assert found is not None and found.kind == kind
    assert found.phrase in answer


@pytest.mark.parametrize(
    "answer",
    [
        "[respond]The capital of Kenya is Nairobi.",
        "You can't go wrong with a cast-iron pan.",
        "The premise of the novel is that a boy is a wizard.",
        "I'm sorry to hear that; rest and drink water.",
        "Nobody knows for sure who built the first wheel, but the oldest is from Mesopotamia.",
    ],
)
def test_answers_with_refusal_words_are_not_flagged(answer: str) -> None:
    assert not refuses_in_text(answer)
