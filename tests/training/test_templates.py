"""The template data files: the generated training data is pinned byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from core.categories import CLASSES
from workers.training.data import ALL_GROUPS, generate
from workers.training.demo import demo_examples
from workers.training.template_groups import TemplateError, combinations, load_template_groups
from workers.training.template_groups import main as template_groups_main

#: SHA-256 of the JSON lines (`Example.to_json`, as `write_jsonl` writes them) of the default
#: seed's data. Moving the templates between files must not change a byte; a deliberate change
#: of the templates updates these digests in the same commit.
TINY_DATA_SHA256 = "0e4fc1dfbbe9442110fbe867c91b73f75555c347fdbf24a1febe0470c8647444"
DEMO_DATA_SHA256 = "2ba067d0ed7568f54d64776b84f320a9b54520ae36614f761e85aaf4f5becaa4"


def _digest(examples: list) -> str:
    sha = hashlib.sha256()
    for example in examples:
        sha.update((json.dumps(example.to_json(), ensure_ascii=False) + "\n").encode())
    return sha.hexdigest()


def test_tiny_recipe_data_is_byte_identical_to_the_pinned_digest() -> None:
    assert _digest(generate(0)) == TINY_DATA_SHA256


def test_demo_recipe_data_is_byte_identical_to_the_pinned_digest() -> None:
    train, heldout = demo_examples(0)
    assert _digest([*train, *heldout]) == DEMO_DATA_SHA256


def _write_class_files(directory: Path, extra: str) -> None:
    """One valid file per class; `extra` is appended to the safety file."""
    for label in CLASSES:
        body = VALID_GROUP + (extra if label == "safety" else "")
        (directory / f"{label}.toml").write_text(body, encoding="utf-8")


VALID_GROUP = """
[[group]]
subcategory = "example"
prompts = ["Tell me about {topic}."]
fillers = [{ topic = "the sea" }, { topic = "rain" }]
replies = ["Here is something about {topic}."]
"""


def test_every_class_has_a_template_file_in_the_package() -> None:
    assert {g.label for g in ALL_GROUPS} == set(CLASSES)
    assert len(load_template_groups()) == len(ALL_GROUPS)


def test_a_minimal_template_directory_loads_in_class_order(tmp_path: Path) -> None:
    _write_class_files(tmp_path, "")
    groups = load_template_groups(tmp_path)
    assert [g.label for g in groups] == list(CLASSES)
    assert groups[0].fillers == ({"topic": "the sea"}, {"topic": "rain"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (VALID_GROUP, "safety.toml: example: subcategory defined twice"),
        (
            VALID_GROUP.replace("example", "other").replace('{topic}."]', '{place}."]', 1),
            "safety.toml: other: 'Tell me about {place}.' uses ['place'], not a filler slot",
        ),
        (
            VALID_GROUP.replace("example", "other").replace('{ topic = "rain" }', '{ x = "y" }'),
            "safety.toml: other.fillers[1] has slots ['x'], expected ['topic']",
        ),
        (
            VALID_GROUP.replace("example", "other").replace('replies = ["', 'reply = ["'),
            "safety.toml: group 1: needs exactly",
        ),
        ("[[group]\n", "safety.toml: "),
    ],
)
def test_a_bad_template_file_is_named_with_its_group(
    tmp_path: Path, extra: str, message: str
) -> None:
    _write_class_files(tmp_path, extra)
    with pytest.raises(TemplateError) as error:
        load_template_groups(tmp_path)
    assert str(error.value).startswith(message), str(error.value)


def test_a_missing_class_file_is_an_error(tmp_path: Path) -> None:
    _write_class_files(tmp_path, "")
    (tmp_path / "humanizing.toml").unlink()
    with pytest.raises(TemplateError, match=r"no template file humanizing\.toml"):
        load_template_groups(tmp_path)


def test_combinations_are_every_template_with_every_filler(capsys: pytest.CaptureFixture) -> None:
    group = next(g for g in ALL_GROUPS if g.subcategory == "contrast_indeterminate")
    made = combinations(group)
    assert len(made) == len(set(made)) <= len(group.prompts) * len(group.fillers)
    assert "How many moons does Jupiter have?" in made
    # the mislabelled combination that slot was split for
    assert not any("live in the sun" in p for p in made)
    assert template_groups_main(["respond.contrast_indeterminate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"respond.contrast_indeterminate\t{p}" for p in made]
