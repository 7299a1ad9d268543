"""Record the tiny model's first-token summaries on real-ish prompts, for the tuner's tests.

    .venv/bin/python -m tests.data.record_first_token_scores [--model var/models/tiny]

Prompts: the hand-written real-world probe (`workers/training/probe.toml`, every class) and the
engine tests' varied prompt set (`tests/engine/prompts.py`). Each prompt's summary is taken by
the service's own prefill scorer (`workers.engine.scoring`), at temperature 1, and written with
its source and label to `tests/data/first_token_scores.json`. Deterministic for a given model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.settings import PROJECT_ROOT
from tests.engine.prompts import PROMPTS
from workers.engine.model import load_model
from workers.engine.scoring import ScoreItem, score_prompts
from workers.training.probe import PROBE

OUT = Path(__file__).with_name("first_token_scores.json")
DEFAULT_MODEL = PROJECT_ROOT / "var" / "models" / "tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    lm = load_model(args.model, device="cpu", dtype="float32")
    items = [ScoreItem(p.text, key=("probe", p.label)) for p in PROBE]
    items += [ScoreItem(text, key=("engine-prompts", None)) for text in PROMPTS]
    rows = [
        {
            "source": scored.key[0],
            "label": scored.key[1],
            "summary": scored.summary.as_row(),
        }
        for scored in score_prompts(lm, items)
    ]
    document = {
        "model": args.model.name,
        "prompts": [item.prompt for item in items],
        "rows": rows,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{len(rows)} summaries written to {OUT}")


if __name__ == "__main__":
    main()
