"""Checkpoints of a training run: trainable weights, optimizer, step and every RNG's state in
OUT/checkpoint, written atomically, so `--resume` continues the run where it stopped."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from transformers import PreTrainedModel

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"


class RngState(TypedDict):
    """Every random generator's state, saved with a checkpoint so a resumed run continues it."""

    torch: torch.Tensor
    python: tuple[Any, ...]  # random.getstate()'s own type
    numpy: dict[str, Any] | tuple[Any, ...]  # what np.random.get_state() returns


def _rng_state() -> RngState:
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def _set_rng_state(state: RngState) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_checkpoint(
    out_dir: Path, model: PreTrainedModel, opt: torch.optim.Optimizer, step: int
) -> None:
    """Atomically write trainable weights, optimizer, step and RNG state to OUT/checkpoint."""
    ckpt = out_dir / CHECKPOINT_DIR
    ckpt.mkdir(parents=True, exist_ok=True)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    state = {"step": step, "model": trainable, "optimizer": opt.state_dict(), "rng": _rng_state()}
    tmp = ckpt / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, ckpt / STATE_FILE)


def load_checkpoint(out_dir: Path, model: PreTrainedModel, opt: torch.optim.Optimizer) -> int:
    """Restore a checkpoint written by `save_checkpoint`; return the step to continue from."""
    state = torch.load(out_dir / CHECKPOINT_DIR / STATE_FILE, weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["model"].items():
            params[name].copy_(value)
    opt.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    return int(state["step"])


def has_checkpoint(out_dir: Path) -> bool:
    return (out_dir / CHECKPOINT_DIR / STATE_FILE).exists()
