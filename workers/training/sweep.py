"""Refusal rate of one category against its threshold, on held-out prompts, and docs/models.md.

`python -m workers.training.sweep` prints the `safety` threshold sweep of every trained model;
with `--write-docs` it also rewrites docs/models.md from the model cards' `training_report.json`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.categories import CATEGORIES, MANIFEST_FILENAME, RESPOND, RefusalManifest
from core.decision import threshold_decision
from core.settings import get_settings
from core.summary import summarise_logits
from workers.engine.query_adapter import load_query_adapter
from workers.training.after_token import respond_then_refuse
from workers.training.card import (
    CARD_FILENAME,
    REPORT_FILENAME,
    answers_section,
    confusion_table,
    metrics_table,
    probe_figures,
    probe_section,
    speed_note,
)
from workers.training.cli import default_threads
from workers.training.data import Example, generate, split
from workers.training.demo import DemoRecipe, demo_examples

THRESHOLDS = (0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.001)
OTHER_THRESHOLD = 0.5
DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "models.md"


@dataclass(frozen=True)
class Evaluated:
    """A trained model with its manifest and the held-out examples of its recipe."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    manifest: RefusalManifest
    heldout: list[Example]


def load(model_dir: Path, *, seed: int = 0) -> Evaluated:
    """Load a trained model directory and regenerate its recipe's held-out examples."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = RefusalManifest.from_json(json.loads((model_dir / MANIFEST_FILENAME).read_text()))
    report = json.loads((model_dir / REPORT_FILENAME).read_text())
    if report.get("model") == "demo":
        heldout = demo_examples(seed, DemoRecipe(**report["recipe"]))[1]
    else:
        heldout = split(generate(seed))[1]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    load_query_adapter(model, model_dir)  # decides as served
    return Evaluated(model, AutoTokenizer.from_pretrained(model_dir), manifest, heldout)


def sweep(loaded: Evaluated, category: str = "safety") -> list[dict[str, float]]:
    """Refusal rate of `category` vs its threshold (others at 0.5) on held-out prompts."""
    from workers.training.evaluate import first_step_logits

    manifest, heldout = loaded.manifest, loaded.heldout
    logits = first_step_logits(
        loaded.model, loaded.tokenizer, [e.messages for e in heldout], manifest=loaded.manifest
    )
    ids = [i for i in manifest.category_ids if i is not None]  # a trained model has every token
    summaries = summarise_logits(logits.double().numpy(), ids)
    k = CATEGORIES.index(category)
    labels = [e.label for e in heldout]
    is_cat = torch.tensor([lab == category for lab in labels])
    is_respond = torch.tensor([lab == RESPOND for lab in labels])
    rows = []
    for tau in THRESHOLDS:
        taus = np.full(len(CATEGORIES), OTHER_THRESHOLD)
        taus[k] = tau
        refused = torch.from_numpy(threshold_decision(summaries, taus) == k)  # (N,)
        rows.append(
            {
                "tau": tau,
                "rate_all": refused.float().mean().item(),
                "tpr": refused[is_cat].float().mean().item(),
                "fpr": refused[~is_cat].float().mean().item(),
                "respond_refused": refused[is_respond].float().mean().item(),
            }
        )
    return rows


def sweep_table(rows: list[dict[str, float]], category: str = "safety") -> str:
    """Markdown table of a sweep."""
    lines = [
        f"| tau_{category} | refused as {category} (all prompts) | of {category}-labelled (TPR) "
        f"| of other labels (FPR) | of respond-labelled |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['tau']:g} | {r['rate_all']:.3f} | {r['tpr']:.3f} | {r['fpr']:.3f} "
            f"| {r['respond_refused']:.3f} |"
        )
    return "\n".join(lines)


def after_respond_lines(result: dict[str, Any]) -> list[str]:
    """Markdown lines for the forced-`[respond]` check."""
    lines = [
        "### Text after a forced `[respond]`",
        "",
        f"Forced `[respond]` on {result['n']} distinct held-out respond prompts, greedy, 32 tokens: "
        f"**{result['refused_in_text']}** answers ({result['rate']:.1%}) contain a refusal phrase "
        "(`workers/training/after_token.py`; a phrase match that flags answers to read, not a "
        "judgement).",
        "",
    ]
    lines += [f"* **{prompt}**\n  {answer!r}" for prompt, answer in result["examples"]]
    return [*lines, ""] if result["examples"] else lines


def _model_section(
    name: str, model_dir: Path, rows: list[dict[str, float]], after: dict[str, Any]
) -> str:
    info: dict[str, Any] = json.loads((model_dir / REPORT_FILENAME).read_text())
    training, report = info["training"], info["heldout"]
    return "\n".join(
        [
            f"## {name} model (`{model_dir.name}`)",
            "",
            f"* held-out first-token macro-F1 **{report['macro_f1']:.3f}**, accuracy "
            f"{report['accuracy']:.3f} over {report['n']} prompts from held-out templates "
            + (
                "(argmax over the control tokens after the decision query)"
                if training.get("query")
                else "(full-vocabulary argmax)"
            ),
            f"* real-world probe: {probe_figures(info['probe'])} (`workers/training/probe.toml`)",
            f"* trained: {info['trainable']}",
            f"* {training['steps']} steps, training {training['seconds']:.0f} s, end to end "
            f"{info['total_seconds']:.0f} s on {info['machine']}{speed_note(info)}",
            f"* data: {info['data']['train']} training / {info['data']['heldout']} held-out examples, "
            f"{info['data']['heldout_templates']} of {info['data']['templates']} templates held out",
            "",
            metrics_table(report),
            "",
            confusion_table(report),
            "",
            f"Threshold sweep for `safety` (other categories at tau = {OTHER_THRESHOLD}), "
            "held-out prompts:",
            "",
            sweep_table(rows),
            "",
            *probe_section(info["probe"], level="###"),
            *answers_section(info, level="###"),
            *after_respond_lines(after),
            *_card_samples(model_dir),
        ]
    )


def _card_samples(model_dir: Path) -> list[str]:
    """The model card's sample-answer section, one heading level down."""
    card = (model_dir / CARD_FILENAME).read_text()
    if "## Sample answers" not in card:
        return []
    section = card.split("## Sample answers", 1)[1]
    return ["### Sample answers" + section.rstrip(), ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-docs", action="store_true", help="rewrite docs/models.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(default_threads())
    models = get_settings().models_dir
    sections = []
    for name, sub in (("Tiny", "tiny"), ("Demo", "demo")):
        model_dir = models / sub
        if not (model_dir / REPORT_FILENAME).exists():
            print(f"{model_dir}: not trained, skipped")
            continue
        loaded = load(model_dir)
        rows = sweep(loaded)
        after = respond_then_refuse(
            loaded.model,
            loaded.tokenizer,
            loaded.heldout,
            manifest=loaded.manifest,
        )
        print(f"{name} ({model_dir})\n{sweep_table(rows)}\n")
        print(f"forced [respond]: {after['refused_in_text']}/{after['n']} refuse in the text\n")
        sections.append(_model_section(name, model_dir, rows, after))
    if args.write_docs and sections:
        head = DOCS_PATH.read_text().split("<!-- generated -->")[0] if DOCS_PATH.exists() else ""
        DOCS_PATH.write_text(head.rstrip() + "\n\n<!-- generated -->\n\n" + "\n".join(sections))
        print(f"wrote {DOCS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
