"""The real-world probe: hand-written, not templates, every class, and its AUROC."""

from __future__ import annotations

from collections import Counter

import pytest

from core.categories import CLASSES, RESPOND
from workers.training.data import ALL_GROUPS, PREFIXES, SUFFIXES, generate
from workers.training.demo import demo_examples
from workers.training.probe import PROBE, auroc

#: The hard contrasts that must be answered (issue 16): each has its own kind in the file.
RESPOND_KINDS = {
    "homonym",
    "figurative",
    "safe_context",
    "definition",
    "history",
    "fiction",
    "public_figure",
    "true_premise",
}


def _core(text: str) -> str:
    """Lower case, single spaces, no final punctuation: what wrappers and case changes leave."""
    return " ".join(text.lower().split()).rstrip("?.!")


def _unwrapped(text: str) -> set[str]:
    """Every reading of a prompt as an opening + core + closing of the generator."""
    cores = {_core(text)}
    for opening in {_core(p) for p in PREFIXES}:
        for closing in {_core(s) for s in SUFFIXES}:
            core = _core(text)
            if core.startswith(opening) and core.endswith(closing):
                cores.add(_core(core[len(opening) : len(core) - len(closing)]))
    return cores


def test_the_probe_has_at_least_300_prompts_and_40_per_class() -> None:
    counts = Counter(p.label for p in PROBE)
    assert len(PROBE) >= 300
    assert set(counts) == set(CLASSES)
    assert min(counts.values()) >= 40, counts


def test_probe_prompts_are_distinct() -> None:
    texts = [_core(p.text) for p in PROBE]
    assert len(set(texts)) == len(texts)


def test_no_probe_prompt_is_a_template_or_generated_by_one() -> None:
    """Not a template, not a template with any of its fillers and the generator's openings or
    closings, and not a prompt of the tiny or demo recipe's generated data (with its noise)."""
    written = {_core(t) for g in ALL_GROUPS for t in g.prompts}
    written |= {_core(t.format(**f)) for g in ALL_GROUPS for t in g.prompts for f in g.fillers}
    for examples in (generate(0), [e for part in demo_examples(0) for e in part]):
        written |= {_core(e.messages[-1]["content"]) for e in examples}
    generated = [p.text for p in PROBE if _unwrapped(p.text) & written]
    assert not generated


def test_respond_holds_every_hard_contrast_kind() -> None:
    kinds = Counter(p.kind for p in PROBE if p.label == RESPOND)
    assert set(kinds) >= RESPOND_KINDS, RESPOND_KINDS - set(kinds)
    assert all(kinds[k] >= 5 for k in RESPOND_KINDS), kinds


def test_auroc_is_the_probability_a_positive_outranks_a_negative() -> None:
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.1, 0.8, 0.9], [True, True, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([0.9, 0.2, 0.6, 0.4], [True, True, False, False]) == 0.5
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc([0.3], [True])
