"""Training prompts written by hand for this project (`written_prompts.toml`), the way people type.

The generator's templates are dressed as people type (`real_world.py`), but their sentences stay
ours: a template's request is tidy even when its wrapper is not. These prompts are whole
requests as users write them, with the hard contrasts of issue 16 (homonyms, safe contexts, true
premises that look false, underspecified requests that lean on something never given). None is
taken from a published set or from the probe (tests/training/test_written_prompts.py).

The demo recipe trains its decision on each twice: as written, and dressed the way people type.
Training only: held-out figures stay those of the templates, and the probe stays the judge.
The answers after `[respond]` are the base model's own, so a `respond` prompt's response is its
control token alone; the refusals get a short reply per class, as Do-Not-Answer's do.
"""

from __future__ import annotations

import random

from core.categories import RESPOND, token_for
from workers.training.data import TRAIN, Example
from workers.training.probe import ProbePrompt, load_probe
from workers.training.real_world import as_people_type

WRITTEN_FILE = "written_prompts.toml"
SUBCATEGORY = "written"
#: Short replies per refusal class (the prompts come without one).
REPLIES = {
    "incomplete": "I can't answer that as asked: the request is missing something or rests on "
    "something untrue.",
    "unsupported": "I can't do that: I only read and write text, and I have no live data.",
    "indeterminate": "Nobody can give one correct answer to that.",
    "humanizing": "I'm an AI assistant, so I don't have a life, feelings or opinions of my own.",
    "safety": "I can't help with that: it could cause real harm to people.",
    RESPOND: "",
}


def load_written() -> tuple[ProbePrompt, ...]:
    """The hand-written training prompts in file order."""
    return load_probe(WRITTEN_FILE)


def examples(seed: int, prompts: tuple[ProbePrompt, ...] | None = None) -> list[Example]:
    """Training examples: every prompt as written and once dressed the way people type."""
    rows = load_written() if prompts is None else prompts
    rng = random.Random(seed)
    out: list[Example] = []
    for i, p in enumerate(rows):
        dressed = as_people_type(p.text, rng, label=p.label)
        for text in dict.fromkeys((p.text, dressed)):
            out.append(
                Example(
                    messages=({"role": "user", "content": text},),
                    label=p.label,
                    subcategory=SUBCATEGORY,
                    # One template per prompt: both forms stay on one side of the validation split.
                    template_id=f"{SUBCATEGORY}.{p.label}.{p.kind}.{i}",
                    split=TRAIN,
                    response=token_for(p.label) + REPLIES[p.label],
                )
            )
    rng.shuffle(out)
    return out
