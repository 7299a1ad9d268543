"""Fixtures for the training tests: the tiny model, trained on first use if it is missing, and
a fresh copy of it with an untied output head (the demo recipe's starting point)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from core.categories import MANIFEST_FILENAME
from core.settings import get_settings
from workers.training.head import untie_head


def _complete(model_dir: Path) -> bool:
    return all(
        (model_dir / name).exists()
        for name in ("config.json", "model.safetensors", "tokenizer.json", MANIFEST_FILENAME)
    )


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """var/models/tiny; trains it (a minute or two on 2 CPU cores) when it is not there yet."""
    model_dir = get_settings().models_dir / "tiny"
    if not _complete(model_dir):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from workers.training.tiny import build_tiny

        print(f"\n[tests] {model_dir} is missing: training the tiny model now", flush=True)
        build_tiny(model_dir)
    return model_dir


@pytest.fixture
def untied(tiny_model_dir: Path) -> tuple[PreTrainedModel, object]:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    untie_head(model)
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)
