"""The frame every training recipe runs in: the same options, the same start and the same end.

A recipe (`tiny.py`, `demo.py`) builds its data, tokenizer, model and `TrainConfig`; a `RecipeRun`
does what they share: seed torch and check the output directory, train, evaluate on held-out
templates and the probe, save the model, and write the card and report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.categories import RefusalManifest
from workers.training import recipe
from workers.training.data import ALL_GROUPS, Example
from workers.training.evaluate import sample_answers
from workers.training.machine_speed import measure_speed
from workers.training.train import Encoded, TrainConfig, log_line, train


@dataclass(frozen=True)
class RunOptions:
    """How to run a recipe (the flags of `rcs model train`); `steps` None: the recipe's own."""

    seed: int = 0
    steps: int | None = None
    resume: bool = False
    keep_checkpoint: bool = False
    log: Callable[[str], None] = log_line


DEFAULT_OPTIONS = RunOptions()


@dataclass(frozen=True)
class CardText:
    """What a recipe's model card says besides the figures, and the prompts it answers there."""

    title: str
    summary: str
    sample_prompts: tuple[str, ...]
    sample_tokens: int


class RecipeRun:
    """One run of a recipe named `name`, writing to `out_dir`; timed from its creation."""

    def __init__(self, name: str, out_dir: Path, options: RunOptions) -> None:
        self.began = time.monotonic()
        self.name = name
        self.out_dir = out_dir
        self.options = options
        torch.manual_seed(options.seed)
        recipe.prepare_out_dir(out_dir, resume=options.resume)
        # Timed before any work, while only this build runs: what its time is to be read against.
        self.speed = measure_speed()
        self.log(f"machine speed: {self.speed}")

    def log(self, message: str) -> None:
        self.options.log(f"[{self.name}] {message}")

    def train(
        self,
        model: PreTrainedModel,
        data: Sequence[Encoded],
        cfg: TrainConfig,
        *,
        pad_id: int,
    ) -> dict[str, object]:
        """Train (or, with `resume`, continue) with checkpoints in the output directory."""
        options = self.options
        return train(
            model,
            data,
            cfg,
            pad_id=pad_id,
            out_dir=self.out_dir,
            resume=options.resume,
            log=options.log,
        )

    def finish(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        manifest: RefusalManifest,
        split: tuple[Sequence[Example], Sequence[Example]],
        training: dict[str, object],
        card: CardText,
        *,
        trainable: str,
        about: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Evaluate, save the model, write its card and report (`about`: the recipe's own
        entries); the report, as written."""
        train_ex, heldout = split
        log = self.options.log
        reports = recipe.evaluate(model, tokenizer, manifest, heldout, name=self.name, log=log)
        recipe.save_model(self.out_dir, model, tokenizer, manifest)
        prompts = card.sample_prompts
        answers = sample_answers(
            model,
            tokenizer,
            prompts,
            max_new_tokens=card.sample_tokens,
            manifest=manifest,
        )
        info = {
            "model": self.name,
            "data": recipe.data_info(self.options.seed, train_ex, heldout, ALL_GROUPS),
            "training": training,
            **reports,
            "trainable": trainable,
            "total_seconds": round(time.monotonic() - self.began, 1),
            "machine": recipe.machine(),
            "machine_speed": self.speed,
            **(about or {}),
        }
        recipe.finish(
            self.out_dir,
            keep_checkpoint=self.options.keep_checkpoint,
            title=card.title,
            summary=card.summary,
            info=info,
            samples=list(zip(prompts, answers, strict=True)),
        )
        self.log(f"saved to {self.out_dir} in {info['total_seconds']:.0f} s")
        return info
