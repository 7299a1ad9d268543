"""The real-world probe: hand-written prompts (`probe.toml`) and the report every model card gives.

Held-out templates measure new phrasings of what a class is about; these prompts measure what
users actually type (typos, context, role-play, hard look-alikes that must be answered). The
report has the first-token classification (full-vocabulary argmax: accuracy, macro-F1, per
class, per kind) and the threshold-free ranking the service's steering depends on: AUROC of
should-refuse (any category) against should-answer (`respond`), scored by 1 - p([respond])
among the control tokens.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import cast

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.categories import CLASSES, RESPOND, RefusalManifest
from workers.engine.query_adapter import load_query_adapter
from workers.training.evaluate import classification_report, first_step_logits, predict_classes

PROBE_FILE = "probe.toml"


@dataclass(frozen=True)
class ProbePrompt:
    """One hand-written prompt, its class and the kind of prompt it is (a table of the file)."""

    label: str
    kind: str
    text: str


def load_probe(filename: str = PROBE_FILE) -> tuple[ProbePrompt, ...]:
    """The prompts of a file laid out as the probe's (one table per class, one array per kind;
    the hand-written training prompts share it), in file order."""
    data = tomllib.loads(
        (resources.files("workers.training") / filename).read_text(encoding="utf-8")
    )
    unknown = sorted(set(data) - set(CLASSES))
    if unknown:
        raise ValueError(f"{filename}: tables {unknown} are not classes {list(CLASSES)}")
    return tuple(
        ProbePrompt(label, kind, text)
        for label, kinds in data.items()
        for kind, texts in kinds.items()
        for text in texts
    )


PROBE: tuple[ProbePrompt, ...] = load_probe()


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        raise ValueError("AUROC needs at least one positive and one negative")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def refusal_scores(logits: torch.Tensor, manifest: RefusalManifest) -> list[float]:
    """1 - p([respond]) in the softmax over the control tokens only, per row of (N, V) logits."""
    control = logits[:, list(manifest.all_ids)].double().softmax(dim=-1)  # (N, C + 1)
    return (1.0 - control[:, -1]).tolist()


def evaluate_probe(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    manifest: RefusalManifest,
    probe: Sequence[ProbePrompt] = PROBE,
) -> dict[str, object]:
    """First-token report on the probe (single-turn, as written) plus AUROC and per-kind accuracy."""
    logits = first_step_logits(
        model, tokenizer, [({"role": "user", "content": p.text},) for p in probe], manifest=manifest
    )
    predicted = predict_classes(logits, manifest)
    report = classification_report([p.label for p in probe], predicted)
    kinds: dict[str, dict[str, float]] = {}
    for p, guess in zip(probe, predicted, strict=True):
        entry = kinds.setdefault(f"{p.label}.{p.kind}", {"n": 0, "correct": 0})
        entry["n"] += 1
        entry["correct"] += guess == p.label
    report["per_kind"] = {
        k: {"n": v["n"], "accuracy": v["correct"] / v["n"]} for k, v in kinds.items()
    }
    report["auroc_refuse_vs_respond"] = auroc(
        refusal_scores(logits, manifest), [p.label != RESPOND for p in probe]
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m workers.training.probe MODEL_DIR [--update-card]`: the probe on a saved model."""
    import argparse
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.categories import MANIFEST_FILENAME
    from workers.training.card import REPORT_FILENAME, update_probe_section

    parser = argparse.ArgumentParser(prog="python -m workers.training.probe")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument(
        "--update-card",
        action="store_true",
        help="write the figures into the model's training_report.json and MODEL_CARD.md",
    )
    args = parser.parse_args(argv)
    manifest = RefusalManifest.from_json(
        json.loads((args.model_dir / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    )
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, local_files_only=True)
    load_query_adapter(model, args.model_dir)  # decides as served
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, local_files_only=True)
    report = evaluate_probe(model, tokenizer, manifest)
    print(
        f"probe: {report['n']} prompts, accuracy {report['accuracy']:.3f}, macro-F1 "
        f"{report['macro_f1']:.3f}, AUROC refuse vs respond {report['auroc_refuse_vs_respond']:.3f}"
    )
    per_class = cast(dict[str, dict[str, float]], report["per_class"])
    for label, m in per_class.items():
        print(f"  {label:<14} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f}")
    per_kind = cast(dict[str, dict[str, float]], report["per_kind"])
    for kind, m in per_kind.items():
        print(f"  {kind:<34} {m['accuracy']:.3f} of {m['n']}")
    if args.update_card:
        path = args.model_dir / REPORT_FILENAME
        info = json.loads(path.read_text(encoding="utf-8"))
        info["probe"] = report
        path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        update_probe_section(args.model_dir, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
