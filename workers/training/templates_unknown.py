"""Template groups of `indeterminate`: questions nobody can answer, and matters of taste."""

from __future__ import annotations

from workers.training.templates import TemplateGroup, _pairs

G = TemplateGroup

UNKNOWN_GROUPS: tuple[TemplateGroup, ...] = (
    G(
        "indeterminate",
        "universal_unknown",
        (
            "What happens after we die?",
            "What existed before the {thing}?",
            "Is there life on a planet in another galaxy?",
            "What is the exact number of {thing2} in the universe?",
            "What is at the center of a black hole?",
            "Why is there something rather than nothing?",
            "What was the first word ever spoken by a human?",
            "How will the universe end exactly?",
            "What is the true meaning of life?",
            "Who was the very first person to cook {food}?",
            "What number am I thinking of?",
            "What is on the other side of the universe?",
            "Why does anything exist?",
            "Why does the universe exist at all?",
            "What happens to us after death?",
            "How many {thing2} exist in the whole universe?",
            "What was before the {thing}?",
            "Is there anything beyond the universe?",
            "Is there a god?",
            "What is the purpose of the universe?",
            "What came before time began?",
            "What will humans be like in a million years?",
            "What is the meaning of existence?",
            "Are we alone in the universe?",
            "What happens when we die?",
            "What existed before the universe began?",
            "Is there life on another planet?",
            "What is inside a black hole?",
            "Why is there something instead of nothing?",
            "What was the first word a human ever said?",
            "How exactly will the universe end?",
            "What is the true purpose of life?",
            "Who was the first person to ever cook {food}?",
            "Guess what number I am thinking of.",
            "What lies beyond the other side of the universe?",
            "What happens to us after we die?",
            "Does God exist?",
            "Is God real?",
            "What came before the {thing}?",
            "What will humans look like in a million years?",
            "What is the reason for existence?",
            "Is humanity alone in the universe?",
            "How many {thing2} are there in the whole universe?",
            "What is the exact meaning of life?",
        ),
        _pairs(
            ("thing", "thing2", "food"),
            "Big Bang|stars|bread;universe|grains of sand|soup;"
            "first galaxy|planets|rice;beginning of time|atoms|cheese",
        ),
        (
            "Nobody knows the answer to that; it remains an open question.",
            "That is unknown to anyone, so I can't give a definite answer.",
        ),
    ),
    G(
        "indeterminate",
        "subjective",
        (
            "What is the best {kind}?",
            "Which {kind} is objectively the greatest?",
            "Who is the most beautiful {who}?",
            "What is the best {kind} of all time?",
            "Is {a} better than {b}?",
            "Which is nicer, {a} or {b}?",
            "Rank the best {kind} for everyone.",
            "Which {kind} is the most fun?",
            "what's the greatest {kind} ever made",
            "Which is the best {kind} in the world?",
            "Is {a} or {b} better?",
            "Who is the greatest {who} ever?",
            "Which {kind} is the best one?",
            "Which {kind} is the best?",
            "What is the most beautiful {kind}?",
            "Is {a} nicer than {b}?",
            "What's better: {a} or {b}?",
            "Name the best {kind} ever.",
        ),
        _pairs(
            ("kind", "who", "a", "b"),
            "movie|actor|summer|winter;song|singer|cats|dogs;pizza topping|painter|tea|coffee;"
            "book|city|jazz|rock music;colour|athlete|beaches|mountains;video game|poet|Paris|Rome",
        ),
        (
            "That is a matter of personal taste, so there isn't one right answer.",
            "It's subjective: different people would answer differently.",
        ),
    ),
)
