"""Pilot: is the demo model's linear read-out what limits it on real prompts?

    .venv/bin/python -m bench.readout_pilot [--train 4000]

The demo model (var/models/demo, with its trained decision query) gives the decision state of a
random `--train` of its recipe's training prompts, 600 held-out prompts and the probe. On the same
states: the model's own control rows (fitted on every training prompt), control rows fitted on the
subset as the recipe fits them (`head.fit_rows`), and a two-layer MLP (256 hidden units, dropout
0.1, AdamW) at three weight decays. If the MLP does no better on the probe than the rows, the
read-out's capacity is not what holds the probe back. A training pilot, not a timing: saved to
bench/results/readout-pilot.json.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.saving import save_results
from core.categories import CLASSES, MANIFEST_FILENAME, RESPOND, RefusalManifest
from core.settings import PROJECT_ROOT
from workers.engine.query_adapter import load_query_adapter
from workers.training.demo import RECIPE, demo_examples
from workers.training.evaluate import classification_report, decision_states
from workers.training.head import fit_rows, ordinary_logsumexp
from workers.training.probe import PROBE, auroc

HELD = 600
MLP_DECAYS = (1e-3, 1e-2, 1e-1)


def _scores(logits: torch.Tensor, labels: list[str], *, probe: bool) -> dict[str, float]:
    """Macro-F1 at the argmax over the six classes; with `probe`, AUROC refuse vs respond."""
    predicted = [CLASSES[i] for i in logits.argmax(-1).tolist()]
    out = {"macro_f1": round(float(classification_report(labels, predicted)["macro_f1"]), 3)}  # type: ignore[arg-type]
    if probe:
        respond = logits.double().softmax(-1)[:, CLASSES.index(RESPOND)]
        out["auroc"] = round(auroc((1 - respond).tolist(), [x != RESPOND for x in labels]), 3)
    return out


def _mlp(states: torch.Tensor, labels: torch.Tensor, *, weight_decay: float) -> torch.nn.Module:
    """A two-layer MLP on standardised states, trained full-batch-ish with AdamW."""
    torch.manual_seed(0)
    mean, std = states.mean(0), states.std(0) + 1e-6
    net = torch.nn.Sequential(
        torch.nn.Linear(states.shape[1], 256),
        torch.nn.GELU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(256, len(CLASSES)),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    x = (states - mean) / std
    for _ in range(60):  # epochs
        for batch in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), labels[batch]).backward()
            opt.step()
    net.eval()
    return torch.nn.Sequential(_Standardise(mean, std), net)


class _Standardise(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = PROJECT_ROOT / "var/models/demo"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    load_query_adapter(model, path)  # decides as served
    manifest = RefusalManifest.from_json(json.loads((path / MANIFEST_FILENAME).read_text()))
    train_ex, heldout = demo_examples(0, RECIPE)
    rng = random.Random(0)
    train, held = rng.sample(train_ex, args.train), rng.sample(heldout, HELD)
    conversations = [
        *(e.messages for e in train),
        *(e.messages for e in held),
        *(({"role": "user", "content": p.text},) for p in PROBE),
    ]
    with torch.no_grad():
        states = decision_states(model, tok, conversations, suffix=manifest.decision_ids)
    n, m = args.train, args.train + HELD
    labels = torch.tensor([CLASSES.index(e.label) for e in train])
    held_labels, probe_labels = [e.label for e in held], [p.label for p in PROBE]
    control = [*(i for i in manifest.category_ids if i is not None), manifest.respond_id]
    head = model.get_output_embeddings().weight.detach()

    def report(logits: torch.Tensor) -> dict[str, Any]:
        return {
            "heldout": _scores(logits[n:m], held_labels, probe=False),
            "probe": _scores(logits[m:], probe_labels, probe=True),
        }

    results: dict[str, Any] = {"train_prompts": n, "heldout_prompts": HELD}
    results["model_rows"] = report(states @ head[control].T)
    others = ordinary_logsumexp(states[:n], head, manifest.category_ids[0] or len(tok))
    rows = fit_rows(states[:n], labels, others, weight_decay=3e-3, init=head[control].clone())
    results["rows_on_subset"] = report(states @ rows.T)
    print("model rows", results["model_rows"], "\nrows on subset", results["rows_on_subset"])
    for wd in MLP_DECAYS:
        net = _mlp(states[:n], labels, weight_decay=wd)
        with torch.no_grad():
            results[f"mlp_wd_{wd}"] = report(net(states))
        print(f"mlp wd {wd}", results[f"mlp_wd_{wd}"], flush=True)
    save_results("readout-pilot.json", results)


if __name__ == "__main__":
    main()
