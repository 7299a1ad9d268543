"""Pilot: does an adapter that only the decision query passes through lift the demo's decision?

    .venv/bin/python -m bench.query_adapter_pilot [--train 2400] [--epochs 8] [--rank 8]
        [--adapter-decays 0 0.01] [--adapter-dropouts 0.1] [--lr-schedules cosine]
        [--eval-epochs 2 4 6]

The demo recipe's query trains one input row through the frozen SmolLM2 (`decision_query.py`).
Here the same training subset, labels and epochs train it twice from the same start: once as the
recipe does, once with a low-rank update of every block's projections that applies at the query's
position only (`workers/engine/query_adapter.py`; the prompt's keys and values and every answer
stay the base model's). Each arm's control rows are then fitted on the subset's states as the
recipe fits them (`head.fit_rows`, decay 3e-3) and scored on 600 held-out prompts and the probe
(after the last epoch, and after each of `--eval-epochs`); `--adapter-decays` trains one adapter
arm per weight decay, `--adapter-dropouts` one per LoRA dropout, `--lr-schedules` one per
learning-rate schedule, each from the same start.
A training pilot, not a timing: saved to bench/results/query-adapter-pilot-<train>.json.
"""

from __future__ import annotations

import argparse
import random
import time
from contextlib import nullcontext
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.readout_pilot import HELD, _scores
from bench.saving import save_results
from core.categories import CLASSES
from core.settings import PROJECT_ROOT
from workers.engine.prompt_tokens import encode_prompt
from workers.engine.query_adapter import add_query_adapter
from workers.training.decision_query import (
    add_query_tokens,
    cache_prompts,
    query_states,
    starting_rows,
    train_query,
)
from workers.training.demo import RECIPE, demo_examples
from workers.training.head import fit_rows, ordinary_logsumexp, untie_head
from workers.training.memory import map_large_blocks
from workers.training.probe import PROBE
from workers.training.tokenizer import add_control_tokens, resize_for_control_tokens
from workers.training.train import log_line

ROWS_DECAY = 3e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train", type=int, default=RECIPE.query_prompts)
    parser.add_argument("--epochs", type=int, default=RECIPE.query_epochs)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--adapter-lr", type=float, default=1e-3)
    parser.add_argument("--held", type=int, default=HELD)
    parser.add_argument(
        "--freeze-after",
        type=int,
        default=RECIPE.query_freeze_after,
        help="adapter arms: epochs before the lower blocks freeze (0: never)",
    )
    parser.add_argument("--frozen-blocks", type=int, default=RECIPE.query_frozen_blocks)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--cache-dtype", default=RECIPE.query_cache_dtype)
    parser.add_argument(
        "--adapter-decays",
        type=float,
        nargs="*",
        default=[0.0],
        help="one adapter arm per weight decay (Adam's L2), each from the same start",
    )
    parser.add_argument(
        "--adapter-dropouts",
        type=float,
        nargs="*",
        default=[],
        help="one more adapter arm per LoRA dropout (no weight decay), from the same start",
    )
    parser.add_argument(
        "--lr-schedules",
        nargs="*",
        default=[],
        help="one more adapter arm per learning-rate schedule (decision_query.LR_SCHEDULES)",
    )
    parser.add_argument(
        "--eval-epochs",
        type=int,
        nargs="*",
        default=[],
        help="also score after these epochs (the curve; the last epoch is always scored)",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    base = PROJECT_ROOT / "var/models/smollm2-base"
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    old_vocab = len(tok)
    add_control_tokens(tok)
    resize_for_control_tokens(model, tok)
    untie_head(model)
    query_ids = add_query_tokens(tok, 1)
    resize_for_control_tokens(model, tok)
    adapter = add_query_adapter(model, args.rank, args.alpha)

    train_ex, heldout = demo_examples(0, RECIPE)
    subset = random.Random(0).sample(range(len(train_ex)), min(args.train, len(train_ex)))
    held = random.Random(0).sample(heldout, args.held)
    labels = torch.tensor([CLASSES.index(train_ex[i].label) for i in subset])
    train_prompts = [encode_prompt(tok, train_ex[i].messages) for i in subset]
    eval_prompts = [
        *(encode_prompt(tok, e.messages) for e in held),
        *(encode_prompt(tok, ({"role": "user", "content": p.text},)) for p in PROBE),
    ]
    pad = tok.pad_token_id
    map_large_blocks()
    store = getattr(torch, args.cache_dtype)
    train_batches = cache_prompts(model, train_prompts, pad, store_dtype=store, log=log_line)
    eval_batches = cache_prompts(model, eval_prompts, pad, log=log_line)
    head = model.get_output_embeddings().weight
    init_rows = head.detach()[old_vocab : old_vocab + len(CLASSES)].clone()
    start_rows = starting_rows(model, train_batches, labels, old_vocab, RECIPE.query_weight_decay)
    start_query = model.get_input_embeddings().weight.detach()[train_prompts[0][-1]][None]
    held_labels, probe_labels = [e.label for e in held], [p.label for p in PROBE]

    initial = [p.detach().clone() for p in adapter.parameters()]

    def evaluate(query: torch.Tensor) -> dict[str, Any]:
        """Rows refitted on the subset's states after `query`; scores on held-out and probe."""
        states = query_states(model, train_batches, len(subset), query)
        eval_states = query_states(model, eval_batches, len(eval_prompts), query)
        others = ordinary_logsumexp(states, head.detach(), old_vocab)
        rows = fit_rows(states, labels, others, weight_decay=ROWS_DECAY, init=init_rows)
        logits = eval_states @ rows.T
        train_acc = float(((states @ rows.T).argmax(-1) == labels).float().mean())
        return {
            "train_accuracy": round(train_acc, 3),
            "heldout": _scores(logits[: len(held)], held_labels, probe=False),
            "probe": _scores(logits[len(held) :], probe_labels, probe=True),
        }

    def arm(
        with_adapter: bool, decay: float = 0.0, dropout: float = 0.0, schedule: str = "constant"
    ) -> dict[str, Any]:
        began = time.monotonic()
        with torch.no_grad():  # every arm starts from the same adapter
            for p, p0 in zip(adapter.parameters(), initial, strict=True):
                p.copy_(p0)
        adapter.set_dropout(dropout)
        curve: dict[int, dict[str, Any]] = {}

        def on_epoch(epoch: int, query: torch.Tensor) -> None:
            if epoch in args.eval_epochs and epoch < args.epochs:
                curve[epoch] = evaluate(query)
                print(f"epoch {epoch}: {curve[epoch]}", flush=True)

        # the cached prompts stay the base model's: every position run here is the query's
        query_only = adapter.at_positions(torch.ones((1, 1, 1))) if with_adapter else nullcontext()
        with query_only:
            query, info = train_query(
                model,
                train_batches,
                labels,
                query=start_query,
                rows=start_rows,
                vocab=old_vocab,
                epochs=args.epochs,
                lr=RECIPE.query_lr,
                weight_decay=RECIPE.query_weight_decay,
                seed=0,
                log=log_line,
                extra=adapter.parameters() if with_adapter else (),
                extra_lr=args.adapter_lr,
                extra_weight_decay=decay,
                schedule=schedule,
                on_epoch=on_epoch,
                freeze_after=args.freeze_after if with_adapter else 0,
                frozen_blocks=args.frozen_blocks,
                frozen_extra=adapter.parameters_below(args.frozen_blocks) if with_adapter else (),
            )
            final = evaluate(query)
        return {
            **final,
            "adapter_weight_decay": decay,
            "adapter_dropout": dropout,
            "lr_schedule": schedule,
            "by_epoch": curve,
            "epoch_losses": info["epoch_losses"],
            "seconds": round(time.monotonic() - began, 1),
        }

    results: dict[str, Any] = {
        "train_prompts": len(subset),
        "heldout_prompts": len(held),
        "epochs": args.epochs,
        "rank": args.rank,
        "alpha": args.alpha,
        "adapter_lr": args.adapter_lr,
        "cache_dtype": args.cache_dtype,
        "adapter_params": sum(p.numel() for p in adapter.parameters()),
        "query_ids": query_ids,
    }
    if not args.skip_baseline:
        results["query_only"] = arm(False)
        print("query only", results["query_only"], flush=True)
    for decay in args.adapter_decays:
        key = "query_and_adapter" + (f"_decay_{decay:g}" if decay else "")
        results[key] = arm(True, decay)
        print(key, results[key], flush=True)
    for dropout in args.adapter_dropouts:
        key = f"query_and_adapter_dropout_{dropout:g}"
        results[key] = arm(True, dropout=dropout)
        print(key, results[key], flush=True)
    for schedule in args.lr_schedules:
        key = f"query_and_adapter_{schedule}"
        results[key] = arm(True, schedule=schedule)
        print(key, results[key], flush=True)
    epochs = "" if args.epochs == 8 else f"-{args.epochs}ep"
    epochs += "".join(f"-decay{d:g}" for d in args.adapter_decays if d)
    epochs += "".join(f"-dropout{d:g}" for d in args.adapter_dropouts)
    epochs += "".join(f"-{s}" for s in args.lr_schedules)
    save_results(f"query-adapter-pilot-{len(subset)}{epochs}.json", results)


if __name__ == "__main__":
    main()
