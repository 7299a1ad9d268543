"""Pilot: does a text suffix after the generation prompt make a better read-out than none?

    .venv/bin/python -m bench.decision_text [none long short]

The frozen base model (var/models/smollm2-base) reads the same prompts (a random 1,200 of the
demo recipe's training prompts at 1,200 per class, 500 held-out ones and the probe) with each
suffix; a head (the control rows, `head.fit_rows`, as the demo's) is fitted on the training states
at three weight decays and scored on the probe (macro-F1, AUROC refuse vs respond) and the
held-out prompts (macro-F1). A training pilot, not a timing: saved to
bench/results/decision-text-pilot.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.saving import save_results
from core.categories import CLASSES, RESPOND
from core.settings import PROJECT_ROOT
from workers.training.demo import RECIPE, demo_examples
from workers.training.evaluate import OTHER, classification_report, decision_states
from workers.training.head import fit_rows, ordinary_logsumexp
from workers.training.probe import PROBE, auroc

SUFFIXES = {
    "none": "",
    "long": (
        "(First I check the request: can it be answered as asked, or does it rest on a false "
        "premise, leave out details, need images, sound or live data, have no knowable answer, "
        "ask about my own life or feelings, or ask for something harmful? Verdict:"
    ),
    "short": "(Can I answer this as asked? Verdict:",
}
TRAIN, HELD = 1200, 500
WEIGHT_DECAYS = (1e-3, 3e-3, 1e-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("suffixes", nargs="*", choices=sorted(SUFFIXES), default=list(SUFFIXES))
    args = parser.parse_args()
    base = PROJECT_ROOT / "var/models/smollm2-base"
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    # the pool the pilot drew from (1,200 generated prompts per class, the recipe of then)
    train_ex, heldout = demo_examples(0, dataclasses.replace(RECIPE, examples_per_class=1200))
    rng = random.Random(0)
    train, held = rng.sample(train_ex, TRAIN), rng.sample(heldout, HELD)
    conversations = [
        *(e.messages for e in train),
        *(e.messages for e in held),
        *(({"role": "user", "content": p.text},) for p in PROBE),
    ]
    labels = torch.tensor([CLASSES.index(e.label) for e in train])
    head = model.get_output_embeddings().weight.detach()
    names = [*CLASSES, OTHER]
    results: dict[str, Any] = {}
    for name in args.suffixes:
        text = SUFFIXES[name]
        suffix = tok(text, add_special_tokens=False).input_ids if text else []
        began = time.monotonic()
        states = decision_states(model, tok, conversations, suffix=suffix, batch_size=16)
        entry: dict[str, Any] = {
            "suffix_tokens": len(suffix),
            "states_seconds": round(time.monotonic() - began, 1),
        }
        others = ordinary_logsumexp(states, head, len(tok))
        for wd in WEIGHT_DECAYS:
            init = torch.zeros(len(CLASSES), states.shape[1])
            rows = fit_rows(states[:TRAIN], labels, others[:TRAIN], weight_decay=wd, init=init)
            logits = torch.cat([states @ rows.T, others[:, None]], -1)  # (N, C + 1)
            predicted = [names[i] for i in logits.argmax(-1).tolist()]
            on_held = classification_report(
                [e.label for e in held], predicted[TRAIN : TRAIN + HELD]
            )
            on_probe = classification_report([p.label for p in PROBE], predicted[TRAIN + HELD :])
            control = logits[TRAIN + HELD :, : len(CLASSES)].double().softmax(-1)
            scores = (1 - control[:, CLASSES.index(RESPOND)]).tolist()
            entry[str(wd)] = {
                "probe_macro_f1": round(float(on_probe["macro_f1"]), 3),  # type: ignore[arg-type]
                "probe_auroc": round(auroc(scores, [p.label != RESPOND for p in PROBE]), 3),
                "heldout_macro_f1": round(float(on_held["macro_f1"]), 3),  # type: ignore[arg-type]
            }
        results[name] = entry
        print(name, entry, flush=True)
    save_results("decision-text-pilot.json", results)


if __name__ == "__main__":
    main()
