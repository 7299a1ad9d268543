"""Engine fixtures: the tiny refusal-token model (var/models/tiny), loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT
from workers.engine.batch import Engine
from workers.engine.model import LoadedModel, load_model

TINY_MODEL_DIR = PROJECT_ROOT / "var" / "models" / "tiny"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny model; a missing model is a failure with the command that makes it, not a skip."""
    if not (TINY_MODEL_DIR / "config.json").is_file():
        pytest.fail(
            f"no tiny model at {TINY_MODEL_DIR}: run `make tiny-model` first", pytrace=False
        )
    return TINY_MODEL_DIR


@pytest.fixture(scope="session")
def lm(tiny_model_dir: Path) -> LoadedModel:
    return load_model(tiny_model_dir, dtype="float32")


@pytest.fixture(scope="session")
def engine(lm: LoadedModel) -> Engine:
    return Engine(lm, max_batch_size=64)
