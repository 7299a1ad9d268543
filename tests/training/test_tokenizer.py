"""Control tokens: last in the vocabulary in CATEGORIES order, manifest and chat template agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from core.categories import CATEGORIES, MANIFEST_FILENAME, RESPOND, RefusalManifest, token_for
from workers.training.data import generate, iter_texts
from workers.training.tokenizer import add_control_tokens, train_tiny_tokenizer


def test_added_control_tokens_take_the_highest_ids_in_category_order(tmp_path: Path) -> None:
    tok = train_tiny_tokenizer(iter_texts(generate(0, examples_per_class=30)), vocab_size=600)
    before = len(tok)
    manifest = add_control_tokens(tok)
    assert list(manifest.all_ids) == list(range(before, before + 6))
    assert manifest.category_tokens == tuple(token_for(c) for c in CATEGORIES)
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.convert_tokens_to_ids(list(manifest.category_tokens)) == list(
        manifest.category_ids
    )
    assert reloaded.convert_tokens_to_ids(token_for(RESPOND)) == manifest.respond_id
    with pytest.raises(ValueError):
        add_control_tokens(reloaded)


def test_control_token_in_text_encodes_as_one_token() -> None:
    tok = train_tiny_tokenizer(iter_texts(generate(0, examples_per_class=30)), vocab_size=600)
    manifest = add_control_tokens(tok)
    ids = tok("[safety]I can't help with that.", add_special_tokens=False).input_ids
    assert ids[0] == manifest.category_ids[CATEGORIES.index("safety")]
    assert ids.count(ids[0]) == 1


def test_tiny_model_manifest_matches_its_tokenizer_and_vocab(tiny_model_dir: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = json.loads((tiny_model_dir / MANIFEST_FILENAME).read_text())
    manifest = RefusalManifest.from_json(data, vocab_size=config.vocab_size)
    assert len(tok) == config.vocab_size
    assert list(manifest.all_ids) == list(range(config.vocab_size - 6, config.vocab_size))
    assert tok.convert_tokens_to_ids([token_for(c) for c in (*CATEGORIES, RESPOND)]) == list(
        manifest.all_ids
    )


def test_chat_template_prompt_ends_where_the_control_token_goes(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "What is the capital of Peru?"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "capital of peru" in tok.decode(tok(prompt).input_ids).lower()
