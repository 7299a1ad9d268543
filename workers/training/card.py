"""Model cards: `MODEL_CARD.md` and the machine-readable `training_report.json` beside the weights."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.categories import CLASSES
from workers.training.evaluate import OTHER
from workers.training.machine_speed import speed_line

REPORT_FILENAME = "training_report.json"
CARD_FILENAME = "MODEL_CARD.md"


def metrics_table(report: dict[str, Any]) -> str:
    """Markdown table of per-class precision/recall/F1/support plus accuracy and macro-F1."""
    lines = ["| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for c in CLASSES:
        m = report["per_class"][c]
        lines.append(
            f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        )
    lines.append(f"| **accuracy** | | | {report['accuracy']:.3f} | {report['n']} |")
    lines.append(f"| **macro-F1** | | | {report['macro_f1']:.3f} | |")
    return "\n".join(lines)


def confusion_table(report: dict[str, Any]) -> str:
    """Markdown confusion matrix: true class rows, predicted class columns (`other` = no control token)."""
    cols = [*CLASSES, OTHER]
    lines = ["| true \\ predicted | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for t in CLASSES:
        row = report["confusion"][t]
        lines.append(f"| {t} | " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def probe_figures(probe: dict[str, Any]) -> str:
    """One line of the probe's headline figures (reports older than the AUROC lack it)."""
    text = f"accuracy **{probe['accuracy']:.3f}**, macro-F1 {probe['macro_f1']:.3f}"
    if "auroc_refuse_vs_respond" in probe:
        text += f", AUROC refuse vs respond **{probe['auroc_refuse_vs_respond']:.3f}**"
    return f"{text} over {probe['n']} hand-written prompts"


def per_kind_table(probe: dict[str, Any]) -> str:
    """Markdown table of the probe's accuracy per kind of prompt (`class.kind`)."""
    lines = ["| kind | n | accuracy |", "| --- | ---: | ---: |"]
    for kind, m in probe["per_kind"].items():
        lines.append(f"| {kind} | {m['n']} | {m['accuracy']:.3f} |")
    return "\n".join(lines)


def probe_section(probe: dict[str, Any], level: str = "##") -> list[str]:
    """Markdown lines reporting the real-world probe."""
    lines = [
        f"{level} Probe: real-world prompts",
        "",
        f"Hand-written prompts as users write them (`workers/training/probe.toml`): "
        f"{probe_figures(probe)}. The AUROC ranks should-refuse prompts (any category) against "
        "should-answer ones by 1 - p([respond]) among the control tokens: threshold-free, as "
        "the service steers the threshold.",
        "",
        metrics_table(probe),
        "",
    ]
    if "per_kind" in probe:
        lines += ["Accuracy per kind of prompt:", "", per_kind_table(probe), ""]
    return lines


def answers_section(info: dict[str, Any], level: str = "##") -> list[str]:
    """Markdown lines on the answers after `[respond]`: kept from the base model, and refusing
    in the text (only recipes that measure them: the demo's)."""
    lines: list[str] = []
    kept = info.get("answers_kept")
    if kept:
        lines += [
            f"{level} Answers after `[respond]`",
            "",
            f"* kept from the base model: **{kept['kept']} of {kept['n']}** ({kept['rate']:.0%}) "
            f"distinct held-out respond prompts get, after a forced `[respond]`, the base model's "
            f"greedy answer token for token over its first {kept['tokens']} tokens "
            "(`workers/training/answers_kept.py`), as the service decodes them"
            + (" (banned openers included)." if "after_respond_unbanned" in info else "."),
        ]
    in_context = info.get("answers_kept_in_context")
    if in_context:
        lines.append(
            f"* with `[respond]` in the answer's context (the weights run outside the service, "
            f"e.g. plain `generate`): **{in_context['kept']} of {in_context['n']}** "
            f"({in_context['rate']:.0%})."
        )
    after = info.get("after_respond")
    if after:
        lines.append(
            f"* refusing in the text after a forced `[respond]`: **{after['refused_in_text']} of "
            f"{after['n']}** ({after['rate']:.1%}) held-out respond prompts "
            "(`workers/training/after_token.py`, a phrase match)"
            + (
                ", as served: the answer may not open with the manifest's banned openers."
                if "after_respond_unbanned" in info
                else "."
            )
        )
    unbanned = info.get("after_respond_unbanned")
    if unbanned:
        lines.append(
            f"* the same without the banned openers (the base model's own answers): "
            f"**{unbanned['refused_in_text']} of {unbanned['n']}** ({unbanned['rate']:.1%})."
        )
    return [*lines, ""] if lines else lines


def update_probe_section(out_dir: Path, probe: dict[str, Any]) -> Path:
    """Replace the probe section of an existing MODEL_CARD.md (after re-running the probe)."""
    path = out_dir / CARD_FILENAME
    text = path.read_text(encoding="utf-8")
    start = text.index("## Probe")
    end = text.find("\n## ", start)
    section = "\n".join(probe_section(probe))
    path.write_text(
        text[:start] + section + (text[end + 1 :] if end >= 0 else ""), encoding="utf-8"
    )
    return path


def speed_note(info: dict[str, Any]) -> str:
    """The machine's speed when the build began, in brackets; nothing for reports made before
    it was measured."""
    speed = info.get("machine_speed")
    return f" ({speed_line(speed)})" if speed else ""


def training_lines(info: dict[str, Any]) -> list[str]:
    """The card's training section: a recipe's own lines (`training["lines"]`), or the figures
    of `train.train`'s loop."""
    training = info["training"]
    if "lines" in training:
        lines = [f"* {line}" for line in training["lines"]]
    else:
        cfg = training["config"]
        lines = [
            f"* steps: {training['steps']} (batch {cfg['batch_size']}, lr {cfg['lr']}, "
            f"first-token weight {cfg['first_token_weight']})",
            f"* final training loss {training['final_loss']}, first-token accuracy "
            f"{training['final_first_token_acc']}",
        ]
    return [
        *lines,
        f"* trained parameters: {info['trainable']}",
        f"* training time: {training['seconds']:.0f} s; end to end: {info['total_seconds']:.0f} s "
        f"on {info['machine']}" + speed_note(info),
    ]


def write_card(
    out_dir: Path,
    *,
    title: str,
    summary: str,
    info: dict[str, Any],
    samples: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write MODEL_CARD.md and training_report.json from `info` (data, training, report, timings)."""
    (out_dir / REPORT_FILENAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    data, report = info["data"], info["heldout"]
    parts = [
        f"# {title}",
        "",
        summary,
        "",
        "## Data",
        "",
        f"Generated by `workers/training/data.py` with seed {data['seed']}: {data['train']} training "
        f"examples and {data['heldout']} held-out examples. Held-out examples come from whole prompt "
        f"templates never seen in training ({data['heldout_templates']} of {data['templates']} "
        "templates, about 20% of each subcategory). A template is held out only when its content "
        "words occur in its class's training data: held-out templates are new phrasings, not new "
        "vocabulary (the probe below is new vocabulary).",
        "",
        "Training examples per class: "
        + ", ".join(f"{c} {n}" for c, n in data["train_per_class"].items()),
        "",
        "## Training",
        "",
        *training_lines(info),
        "",
        "## Held-out first-token classification",
        "",
        "Prediction = argmax of the first-step logits over the **full vocabulary**; an ordinary "
        "token winning counts as `other` (wrong).",
        "",
        metrics_table(report),
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        "",
        confusion_table(report),
        "",
        *probe_section(info["probe"]),
        *answers_section(info),
    ]
    if samples:
        parts += ["## Sample answers (greedy)", ""]
        for prompt, answer in samples:
            parts += [f"* **{prompt}**", f"  {answer!r}"]
        parts.append("")
    path = out_dir / CARD_FILENAME
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
