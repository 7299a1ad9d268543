"""The template data files: the generated training data is pinned byte for byte."""

from __future__ import annotations

import hashlib
import json

from workers.training.data import generate
from workers.training.demo import EXAMPLES_PER_CLASS as DEMO_EXAMPLES_PER_CLASS

#: SHA-256 of the JSON lines (`Example.to_json`, as `write_jsonl` writes them) of the default
#: seed's data. Moving the templates between files must not change a byte; a deliberate change
#: of the templates updates these digests in the same commit.
TINY_DATA_SHA256 = "cb494e8891da6610c82d50f34f4bd8cb76a58bf465319478d8545114df1db390"
DEMO_DATA_SHA256 = "ecacb60b16ebf39adbf5539776f41890e7dcced17825e065d4cea49e4337066e"


def _digest(examples: list) -> str:
    sha = hashlib.sha256()
    for example in examples:
        sha.update((json.dumps(example.to_json(), ensure_ascii=False) + "\n").encode())
    return sha.hexdigest()


def test_tiny_recipe_data_is_byte_identical_to_the_pinned_digest() -> None:
    assert _digest(generate(0)) == TINY_DATA_SHA256


def test_demo_recipe_data_is_byte_identical_to_the_pinned_digest() -> None:
    assert _digest(generate(0, examples_per_class=DEMO_EXAMPLES_PER_CLASS)) == DEMO_DATA_SHA256
