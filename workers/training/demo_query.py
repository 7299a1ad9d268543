"""The demo model's decision query: its tokens added and trained, with its adapter, on cached
prompts (`decision_query.py`, `workers/engine/query_adapter.py`); `demo.py` runs it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workers.engine.prompt_tokens import encode_prompt
from workers.engine.query_adapter import add_query_adapter
from workers.training import donotanswer, written_prompts
from workers.training.data import Example
from workers.training.decision_query import (
    add_query_tokens,
    cache_prompts,
    query_states,
    starting_rows,
    train_query,
)
from workers.training.tokenizer import resize_for_control_tokens

if TYPE_CHECKING:
    from workers.training.demo import DemoRecipe


#: Subcategories of the prompts people wrote, as opposed to the generator's templates.
HUMAN_SUBCATEGORIES = frozenset({donotanswer.SUBCATEGORY, written_prompts.SUBCATEGORY})


def query_subset(
    train_ex: Sequence[Example], pool: Sequence[int] | None, rc: DemoRecipe, seed: int
) -> list[int]:
    """Indices (into `train_ex`, of `pool` when given) of the at most `rc.query_prompts` prompts
    the query trains on: a seeded random sample. With `rc.query_keeps_human_prompts` each class
    keeps its share of the pool, as a uniform sample would, and fills it with the class's
    human-written prompts first (generated prompts are plentiful, these are not)."""
    pool = list(range(len(train_ex)) if pool is None else pool)
    rng = random.Random(seed)
    n = min(rc.query_prompts, len(pool))
    if not rc.query_keeps_human_prompts:
        return rng.sample(pool, n)
    by_class: dict[str, tuple[list[int], list[int]]] = {}
    for i in pool:
        human, generated = by_class.setdefault(train_ex[i].label, ([], []))
        (human if train_ex[i].subcategory in HUMAN_SUBCATEGORIES else generated).append(i)
    subset: list[int] = []
    for label in sorted(by_class):
        human, generated = by_class[label]
        quota = round(n * (len(human) + len(generated)) / len(pool))
        kept = rng.sample(human, min(quota, len(human)))
        subset += kept + rng.sample(generated, min(quota - len(kept), len(generated)))
    rng.shuffle(subset)
    return subset


def train_query_tokens(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    train_ex: Sequence[Example],
    labels: torch.Tensor,  # (N,)
    old_vocab: int,
    rc: DemoRecipe,
    *,
    seed: int,
    log: Callable[[str], None],
    pool: Sequence[int] | None = None,
) -> tuple[list[int], dict[str, Any] | None, dict[int, torch.Tensor]]:
    """Add and train the decision query's tokens (`decision_query.py`) on a subset of the training
    prompts (`query_subset`; of `pool`, indices into `train_ex`, when given): (their ids, a report, the
    final states after the query of the subset's prompts by index into `train_ex`, which its
    caches give for free). The query starts from the prompt's
    last token (the newline after `assistant`) and trains beside a head first fitted where the
    answer starts; the model's input rows of the query tokens are set, their output rows zeroed
    (the engine never lets an answer use them)."""
    if not rc.query_tokens:
        return [], None, {}
    ids = add_query_tokens(tok, rc.query_tokens)
    resize_for_control_tokens(model, tok)
    subset = query_subset(train_ex, pool, rc, seed)
    prompts = [encode_prompt(tok, train_ex[i].messages) for i in subset]
    store = getattr(torch, rc.query_cache_dtype)
    batches = cache_prompts(model, prompts, tok.pad_token_id, store_dtype=store, log=log)
    sub_labels = labels[subset]
    head = model.get_output_embeddings().weight
    start_rows = starting_rows(model, batches, sub_labels, old_vocab, rc.query_weight_decay)
    emb = model.get_input_embeddings().weight
    adapter = (
        add_query_adapter(model, rc.query_adapter_rank, rc.query_adapter_alpha)
        if rc.query_adapter_rank
        else None
    )
    # The prompts' caches above are the base model's; every position run below is the query's.
    query_only = adapter.at_positions(torch.ones((1, 1, 1))) if adapter else nullcontext()
    with query_only:
        query, info = train_query(
            model,
            batches,
            sub_labels,
            query=emb.detach()[prompts[0][-1]].repeat(rc.query_tokens, 1),
            rows=start_rows,
            vocab=old_vocab,
            epochs=rc.query_epochs,
            lr=rc.query_lr,
            weight_decay=rc.query_weight_decay,
            seed=seed,
            log=log,
            extra=adapter.parameters() if adapter else (),
            extra_lr=rc.query_adapter_lr,
            schedule=rc.query_lr_schedule,
            freeze_after=rc.query_freeze_after,
            frozen_blocks=rc.query_frozen_blocks,
            frozen_extra=adapter.parameters_below(rc.query_frozen_blocks) if adapter else (),
            label_smoothing=rc.query_label_smoothing,
        )
        final = query_states(model, batches, len(subset), query)
    with torch.no_grad():
        emb[ids[0] : ids[-1] + 1] = query
        head[ids[0] : ids[-1] + 1] = 0.0
    states = dict(zip(subset, final, strict=True))
    with_adapter = (
        f" with a rank-{rc.query_adapter_rank} adapter of every block (lr {rc.query_adapter_lr})"
        if adapter
        else ""
    )
    frozen = (
        f", the lowest {rc.query_frozen_blocks} blocks and the query's rows frozen after "
        f"epoch {rc.query_freeze_after}"
        if rc.query_freeze_after
        else ""
    )
    human = sum(train_ex[i].subcategory in HUMAN_SUBCATEGORIES for i in subset)
    info["human_prompts"] = human
    info["summary"] = (
        f"{rc.query_tokens} token(s){with_adapter}{frozen} trained {info['epochs']} epochs on "
        f"{len(subset)} cached prompts ({human} human-written; lr {rc.query_lr}, {rc.query_lr_schedule}, loss {info['epoch_losses']}), "
        f"{info['seconds']:.0f} s"
    )
    if adapter:
        info["adapter_params"] = sum(p.numel() for p in adapter.parameters())
    return ids, info, states
