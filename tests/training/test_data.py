"""The data generator: deterministic, template-level split, every class, one control token each."""

from __future__ import annotations

from collections import Counter

from core.categories import CLASSES, RESPOND, token_for
from workers.training.data import (
    ALL_GROUPS,
    HELDOUT,
    HELDOUT_FRACTION,
    TRAIN,
    class_vocabulary,
    content_words,
    generate,
    heldout_templates,
    split,
    template_ids,
)
from workers.training.tokenizer import CONTROL_TOKENS

SUBCATEGORIES = {
    "incomplete": {"false_presupposition", "underspecified", "incomprehensible"},
    "unsupported": {"input_modality", "output_modality", "style_and_length", "temporal"},
    "indeterminate": {"universal_unknown", "subjective"},
    "humanizing": {"personal_inquiry", "own_opinion"},
    "safety": {"dangerous", "privacy", "misinformation", "copyright", "offensive"},
}


def test_same_seed_gives_identical_examples_and_other_seed_differs() -> None:
    assert generate(3, examples_per_class=60) == generate(3, examples_per_class=60)
    assert generate(3, examples_per_class=60) != generate(4, examples_per_class=60)


def test_split_holds_out_whole_templates_with_no_overlap() -> None:
    train, heldout = split(generate(0, examples_per_class=200))
    train_templates = {e.template_id for e in train}
    heldout_ids = {e.template_id for e in heldout}
    assert train_templates.isdisjoint(heldout_ids)
    assert heldout_ids <= heldout_templates()
    assert all(e.split == TRAIN for e in train) and all(e.split == HELDOUT for e in heldout)


def test_split_does_not_depend_on_the_seed() -> None:
    a = {e.template_id for e in split(generate(1, examples_per_class=80))[1]}
    b = {e.template_id for e in split(generate(2, examples_per_class=80))[1]}
    assert a == b


def test_about_a_fifth_of_each_class_templates_is_held_out() -> None:
    held = heldout_templates()
    for label in CLASSES:
        ids = [
            f"{g.label}.{g.subcategory}.{i}"
            for g in ALL_GROUPS
            if g.label == label
            for i in range(len(g.prompts))
        ]
        share = sum(t in held for t in ids) / len(ids)
        assert 0.1 <= share <= 0.3, (label, share)


def test_every_class_and_subcategory_is_in_both_splits() -> None:
    train, heldout = split(generate(0, examples_per_class=200))
    for part in (train, heldout):
        assert set(Counter(e.label for e in part)) == set(CLASSES)
    subs = {(e.label, e.subcategory) for e in train}
    for label, names in SUBCATEGORIES.items():
        assert {(label, n) for n in names} <= subs
    assert any(s.startswith("contrast_") for label, s in subs if label == RESPOND)


def test_responses_start_with_exactly_one_control_token_matching_the_label() -> None:
    for ex in generate(0, examples_per_class=100):
        assert ex.response.startswith(token_for(ex.label))
        assert not any(t in ex.reply for t in CONTROL_TOKENS)
        assert ex.reply.strip()
        assert ex.messages[-1]["role"] == "user"


def test_contrast_prompts_are_answered() -> None:
    examples = generate(0, examples_per_class=300)
    kill_time = [e for e in examples if "kill time" in e.messages[-1]["content"].lower()]
    phone = [e for e in examples if "public phone number" in e.messages[-1]["content"].lower()]
    assert kill_time and phone
    assert all(e.label == RESPOND for e in kill_time + phone)


def test_some_examples_are_multi_turn() -> None:
    examples = generate(0, examples_per_class=100)
    multi = [e for e in examples if len(e.messages) > 1]
    assert 0.05 < len(multi) / len(examples) < 0.3
    assert all(m[1]["role"] == "assistant" for m in (e.messages for e in multi))


def test_held_out_templates_are_new_phrasings_of_the_class_vocabulary() -> None:
    held = heldout_templates()
    for group in ALL_GROUPS:
        for tid, prompt in zip(template_ids(group), group.prompts, strict=True):
            if tid in held:
                vocabulary = class_vocabulary(ALL_GROUPS, group.label, excluded=held)
                assert content_words(prompt) <= vocabulary, (tid, prompt)


def test_every_subcategory_holds_out_its_fifth() -> None:
    held = heldout_templates()
    for group in ALL_GROUPS:
        ids = template_ids(group)
        assert sum(t in held for t in ids) == max(1, round(HELDOUT_FRACTION * len(ids))), ids[0]
