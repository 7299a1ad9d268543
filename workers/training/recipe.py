"""Shared steps of the training recipes: output directory checks, data summary, evaluation, saving."""

from __future__ import annotations

import os
import platform
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.categories import CLASSES, RefusalManifest
from workers.engine.query_adapter import find_query_adapter, save_query_adapter
from workers.training.card import write_card
from workers.training.checkpoint import CHECKPOINT_DIR
from workers.training.data import Example, heldout_templates, template_ids
from workers.training.evaluate import classification_report, first_step_logits, predict_classes
from workers.training.probe import evaluate_probe
from workers.training.template_groups import TemplateGroup
from workers.training.tokenizer import write_manifest


class TrainingError(RuntimeError):
    """A training run that cannot start or continue (bad output directory, missing checkpoint)."""


def prepare_out_dir(out_dir: Path, *, resume: bool) -> None:
    """Create `out_dir` and check it is writable; refuse to resume without a checkpoint."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"cannot create output directory {out_dir}: {exc.strerror}") from exc
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise TrainingError(f"output directory {out_dir} is not writable")
    if resume and not (out_dir / CHECKPOINT_DIR).is_dir():
        raise TrainingError(f"--resume: no checkpoint in {out_dir / CHECKPOINT_DIR}")


def machine() -> str:
    """A short description of where training ran."""
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def data_info(
    seed: int, train: Sequence[Example], heldout: Sequence[Example], groups: Sequence[TemplateGroup]
) -> dict[str, Any]:
    """Counts recorded in the model card."""
    counts = Counter(e.label for e in train)
    return {
        "seed": seed,
        "train": len(train),
        "heldout": len(heldout),
        "templates": sum(len(template_ids(g)) for g in groups),
        "heldout_templates": len(heldout_templates(groups)),
        "train_per_class": {c: counts[c] for c in CLASSES},
    }


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    manifest: RefusalManifest,
    heldout: Sequence[Example],
    *,
    name: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """First-token reports (full-vocabulary argmax) on held-out templates and on the probe."""
    logits = first_step_logits(model, tokenizer, [e.messages for e in heldout], manifest=manifest)
    report = classification_report([e.label for e in heldout], predict_classes(logits, manifest))
    probe = evaluate_probe(model, tokenizer, manifest)
    log(
        f"[{name}] held-out first-token macro-F1 {report['macro_f1']:.3f} accuracy "
        f"{report['accuracy']:.3f}; probe accuracy {probe['accuracy']:.3f} AUROC "
        f"{probe['auroc_refuse_vs_respond']:.3f}"
    )
    return {"heldout": report, "probe": probe}


def save_model(
    out_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    manifest: RefusalManifest,
) -> None:
    """Plain transformers safetensors + tokenizer + `refusal_tokens.json` (+ a query adapter's
    own files, `workers/engine/query_adapter.py`)."""
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id = eot
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = eot
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    adapter = find_query_adapter(model)
    if adapter is not None:  # beside the plain model
        save_query_adapter(adapter, out_dir)
    tokenizer.save_pretrained(out_dir)
    write_manifest(manifest, out_dir)


def finish(out_dir: Path, *, keep_checkpoint: bool, **card: Any) -> Path:
    """Write the model card and drop the checkpoint of a completed run."""
    path = write_card(out_dir, **card)
    if not keep_checkpoint:
        shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    return path
