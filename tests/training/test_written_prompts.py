"""The hand-written training prompts: every class, distinct, away from the probe, trained twice."""

from __future__ import annotations

import re
from collections import Counter

from core.categories import CLASSES
from workers.training.data import TRAIN
from workers.training.demo import demo_examples
from workers.training.probe import PROBE
from workers.training.written_prompts import SUBCATEGORY, examples, load_written

#: Word overlap (Jaccard) at which a training prompt counts as a copy of a probe prompt. Pairs of
#: different requests that share their frame ("Do you have a ...?") stay below it.
NEAR_COPY = 0.6


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def test_every_class_has_at_least_40_distinct_prompts() -> None:
    prompts = load_written()
    counts = Counter(p.label for p in prompts)
    assert set(counts) == set(CLASSES)
    assert min(counts.values()) >= 40, counts
    texts = [" ".join(p.text.lower().split()) for p in prompts]
    assert len(set(texts)) == len(texts)


def test_no_training_prompt_is_near_a_probe_prompt() -> None:
    """The probe judges the model: nothing it asks may be trained, nor a close rewording of it."""
    near = [
        (w.text, p.text)
        for w in load_written()
        for p in PROBE
        if len(_words(w.text) & _words(p.text)) / len(_words(w.text) | _words(p.text)) >= NEAR_COPY
    ]
    assert not near


def test_each_prompt_trains_as_written_and_dressed_under_one_template() -> None:
    prompts = load_written()
    out = examples(3)
    assert out == examples(3)
    by_template: dict[str, list[str]] = {}
    for e in out:
        assert e.split == TRAIN and e.subcategory == SUBCATEGORY
        by_template.setdefault(e.template_id, []).append(e.messages[0]["content"])
    assert len(by_template) == len(prompts)
    for p, (template_id, texts) in zip(
        prompts, sorted(by_template.items(), key=_index), strict=True
    ):
        assert template_id.startswith(f"{SUBCATEGORY}.{p.label}.{p.kind}.")
        assert p.text in texts and 1 <= len(texts) <= 2
    assert sum(len(t) == 2 for t in by_template.values()) > 0.9 * len(prompts)


def _index(item: tuple[str, list[str]]) -> int:
    return int(item[0].rsplit(".", 1)[1])


def test_the_demo_trains_on_them_and_never_holds_them_out() -> None:
    train, heldout = demo_examples(0)
    assert sum(e.subcategory == SUBCATEGORY for e in train) == len(examples(0))
    assert not any(e.subcategory == SUBCATEGORY for e in heldout)
