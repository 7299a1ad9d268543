"""Loading: a served model and its manifest are checked at load, not at the first request."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from core.categories import CATEGORIES, MANIFEST_FILENAME
from workers.engine.model import LoadedModel, ModelLoadError, load_model


def _copy_without_weights(src: Path, dst: Path) -> Path:
    """Config, tokenizer and manifest only: the manifest is checked before weights load."""
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".md")):
            shutil.copy(f, dst / f.name)
    return dst


def _edit_manifest(path: Path, edit: Callable[[dict], object]) -> None:
    file = path / MANIFEST_FILENAME
    data = json.loads(file.read_text())
    edit(data)
    file.write_text(json.dumps(data))


def test_loaded_model_is_ready_to_serve(lm: LoadedModel) -> None:
    assert lm.tokenizer.padding_side == "left"
    assert lm.tokenizer.pad_token_id is not None and lm.pad_id == lm.tokenizer.pad_token_id
    assert lm.dtype == torch.float32
    assert lm.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert lm.refusal_ids.tolist() == list(lm.manifest.category_ids)
    assert lm.control_ids.tolist() == [*lm.manifest.category_ids, lm.manifest.respond_id]
    assert len(lm.eos_ids) >= 1
    assert lm.model.get_output_embeddings().weight.shape[0] == lm.vocab_size


def test_control_tokens_are_single_ids_in_the_vocabulary(lm: LoadedModel) -> None:
    for token, tid in zip(lm.manifest.category_tokens, lm.manifest.category_ids, strict=True):
        assert lm.tokenizer.encode(token, add_special_tokens=False) == [tid]
    assert len(lm.manifest.category_tokens) == len(CATEGORIES)


def test_missing_manifest_is_a_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = _copy_without_weights(tiny_model_dir, tmp_path / "m")
    (bad / MANIFEST_FILENAME).unlink()
    with pytest.raises(ModelLoadError, match=r"no refusal_tokens\.json"):
        load_model(bad)


def test_manifest_id_not_matching_token_text_is_a_load_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    bad = _copy_without_weights(tiny_model_dir, tmp_path / "m")

    def swap(data: dict) -> None:
        data["categories"]["safety"]["id"] = 5  # an ordinary token, not `[safety]`

    _edit_manifest(bad, swap)
    with pytest.raises(ModelLoadError, match=r"token '\[safety\]' has id 5 in the manifest"):
        load_model(bad)


def test_token_missing_from_vocabulary_is_a_load_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    bad = _copy_without_weights(tiny_model_dir, tmp_path / "m")

    def rename(data: dict) -> None:
        data["categories"]["humanizing"]["token"] = "[no-such-token]"

    _edit_manifest(bad, rename)
    with pytest.raises(ModelLoadError, match="no-such-token"):
        load_model(bad)


def test_id_outside_vocabulary_is_a_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = _copy_without_weights(tiny_model_dir, tmp_path / "m")
    _edit_manifest(bad, lambda d: d["respond"].update(id=10**7))
    with pytest.raises(ModelLoadError, match="outside the vocabulary"):
        load_model(bad)


def test_duplicate_ids_are_a_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = _copy_without_weights(tiny_model_dir, tmp_path / "m")

    def dup(data: dict) -> None:
        data["categories"]["incomplete"]["id"] = data["categories"]["safety"]["id"]

    _edit_manifest(bad, dup)
    with pytest.raises(ModelLoadError, match="duplicate token ids"):
        load_model(bad)


def test_directory_without_model_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)


def test_answer_text_drops_nul_characters(lm: LoadedModel) -> None:
    # A byte-level tokenizer can produce U+0000, which PostgreSQL text cannot hold.
    ids = lm.tokenizer("fine\x00 then", add_special_tokens=False)["input_ids"]
    assert "\x00" in lm.decode(ids)
    assert lm.answer_text(ids) == lm.decode(ids).replace("\x00", "").lstrip()
    assert "\x00" not in lm.answer_text(ids)
