"""A learned decision query: soft tokens appended after the prompt, where the head reads.

A linear read-out of the frozen model's state where the answer starts can only use what the base
model put there to predict its answer. A few tokens appended after the generation prompt, whose
input rows are trained (the base weights stay frozen), ask the prompt a question of their own:
their queries attend over it in every block, and the head reads the last one's final state. The
engine appends them for the first step only and drops their cache columns, so answers never see
them (`RefusalManifest.decision_ids`, `workers/engine/prefill.py`).

Training is cheap because the query comes last: no prompt position depends on it, so each
prompt's key/value cache is computed once (no gradient) and every step runs only the query's
positions through the blocks, forward and backward, against those caches. Once the lower blocks
freeze (`train_query`'s `freeze_after`), the query's state entering the first block still
trained is computed once too, and the steps run only the blocks above it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from core.categories import CLASSES
from workers.engine.cache_names import output_cache
from workers.engine.forward import run_layers
from workers.engine.prefill import left_pad
from workers.training.head import fit_rows, ordinary_logsumexp

#: Texts of the query tokens a recipe may add (the first `k`), special tokens after the control
#: tokens; typed in a prompt they stay plain text (`prompt_tokens`).
QUERY_TOKEN_TEXTS: tuple[str, ...] = tuple(f"[query{i}]" for i in range(1, 9))


def add_query_tokens(tokenizer: PreTrainedTokenizerBase, k: int) -> list[int]:
    """Add `k` query tokens after the existing vocabulary (the control tokens kept); their ids."""
    texts = list(QUERY_TOKEN_TEXTS[:k])
    first = len(tokenizer)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": texts}, replace_extra_special_tokens=False
    )
    ids = list(tokenizer.convert_tokens_to_ids(texts))
    if ids != list(range(first, first + k)):
        raise RuntimeError(f"query tokens got ids {ids}, expected {first}..{first + k - 1}")
    return ids


@dataclass(frozen=True)
class CachedPrompts:
    """A left-padded batch of prompts and their key/value cache (no gradient)."""

    rows: list[int]  # positions of these prompts in the caller's list
    mask: torch.Tensor  # (B, T)
    last: torch.Tensor  # (B,) position id of each prompt's last token
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block: keys, values (B, heads, T, D)
    state: torch.Tensor  # (B, H) final state at each prompt's last position (no query)
    #: The first block the query runs through: `kv` holds the blocks from it on, and `entry`
    #: the query's states entering it, (B, k, H), computed once (`freeze_below`); 0: every
    #: block, from the query's input rows.
    first: int = 0
    entry: torch.Tensor | None = None

    def cache(self, model: PreTrainedModel) -> DynamicCache:
        """The keys and values as a cache in the model's own dtype (they may be stored smaller)."""
        cache = DynamicCache(config=model.config)
        for i, (keys, values) in enumerate(self.kv):
            cache.update(keys.to(model.dtype), values.to(model.dtype), self.first + i)
        return cache


@torch.no_grad()
def cache_prompts(
    model: PreTrainedModel,
    prompts: Sequence[list[int]],
    pad: int,
    *,
    batch_size: int = 32,
    store_dtype: torch.dtype | None = None,
    log: Callable[[str], None] | None = None,
) -> list[CachedPrompts]:
    """Key/value caches of token-id prompts, in batches of similar length, kept in `store_dtype`
    (None: the model's); float16 halves their memory, the one bound on how many prompts train."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = []
    for n, start in enumerate(range(0, len(order), batch_size)):
        chunk = order[start : start + batch_size]
        batch = left_pad([prompts[i] for i in chunk], pad, torch.device("cpu"))
        ids, mask, pos = batch.input_ids, batch.attention_mask, batch.position_ids  # (B, T) each
        run = model.base_model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        dtype = store_dtype or model.dtype
        kv = [(layer.keys.to(dtype), layer.values.to(dtype)) for layer in output_cache(run).layers]
        state = run.last_hidden_state[:, -1].float()
        out.append(CachedPrompts(chunk, mask, pos[:, -1], kv, state))
        if log and n % 40 == 0:
            log(f"[query] prompt caches {start + len(chunk)}/{len(prompts)}")
    return out


def run_query(
    model: PreTrainedModel, batch: CachedPrompts, hidden: torch.Tensor, stop: int | None = None
) -> torch.Tensor:
    """The query's states (B, k, H) run from block `batch.first` up to `stop` (None: through the
    last block and the final norm) against the batch's cache: the decoder's own layers, rotary
    embedding and norm, called as its forward calls them, so that a run may start above block 0."""
    base = model.base_model
    b, k = hidden.shape[:2]
    pos = batch.last[:, None] + torch.arange(1, k + 1)  # (B, k)
    prompt = batch.mask.bool()[:, None].expand(-1, k, -1)  # (B, k, T): its padding stays out
    seen = torch.ones((k, k), dtype=torch.bool).tril().expand(b, -1, -1)  # each sees those before
    allowed = torch.cat([prompt, seen], -1)[:, None]  # (B, 1, k, T + k)
    hidden = run_layers(model, hidden, allowed, pos, batch.cache(model), batch.first, stop)
    return base.norm(hidden) if stop is None else hidden


def query_state(model: PreTrainedModel, batch: CachedPrompts, query: torch.Tensor) -> torch.Tensor:
    """Final (normed) state at the last query position after each cached prompt: (B, H)."""
    b = batch.mask.shape[0]
    hidden = batch.entry if batch.entry is not None else query[None].expand(b, -1, -1)
    return run_query(model, batch, hidden)[:, -1]


@torch.no_grad()
def freeze_below(
    model: PreTrainedModel, batches: Sequence[CachedPrompts], query: torch.Tensor, first: int
) -> list[CachedPrompts]:
    """The batches run from block `first` on: the query's states entering it computed once with
    the query and every block below as they are now, which must no longer change; the caches of
    the blocks below are left out (the caller's batches still hold them)."""
    if any(batch.first for batch in batches):
        raise ValueError("these batches are already frozen below a block")
    out = []
    for batch in batches:
        start = query[None].expand(batch.mask.shape[0], -1, -1)
        entry = run_query(model, batch, start, stop=first)
        out.append(replace(batch, kv=batch.kv[first:], first=first, entry=entry))
    return out


@torch.no_grad()
def query_states(
    model: PreTrainedModel, batches: Sequence[CachedPrompts], n: int, query: torch.Tensor | None
) -> torch.Tensor:
    """Final states at the query (None: at the prompt's end) for every cached prompt, in the
    caller's order: (n, H)."""
    out = torch.empty((n, model.config.hidden_size))
    for batch in batches:
        out[batch.rows] = batch.state if query is None else query_state(model, batch, query).float()
    return out


def starting_rows(
    model: PreTrainedModel,
    batches: Sequence[CachedPrompts],
    labels: torch.Tensor,  # (N,)
    vocab: int,
    weight_decay: float,
) -> torch.Tensor:
    """The head's control rows (K, H) fitted where the answer starts (each prompt's own last
    state, no query yet), from the model's current rows: where the query's training starts."""
    head = model.get_output_embeddings().weight.detach()
    natural = query_states(model, batches, len(labels), None)
    others = ordinary_logsumexp(natural, head, vocab)
    init = head[vocab : vocab + len(CLASSES)]
    return fit_rows(natural, labels, others, weight_decay=weight_decay, init=init)


#: Courses of the learning rates over the query's training steps (`lr_factor`).
LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The learning rates' factor after `step` of `steps` optimiser steps: 1 throughout
    ("constant"), or half a cosine from 1 at the first step to 0 after the last ("cosine"): a
    constant rate left the query's loss rising again in its last epochs."""
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))


def train_query(
    model: PreTrainedModel,
    batches: Sequence[CachedPrompts],
    labels: torch.Tensor,  # (N,) index of each prompt's class among the control rows
    *,
    query: torch.Tensor,  # (k, H) initial input rows of the query tokens
    rows: torch.Tensor,  # (K, H) initial control rows of the head, trained alongside
    vocab: int,  # ordinary tokens are the ids below it: one competitor (log-sum-exp)
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
    log: Callable[[str], None],
    extra: Sequence[torch.nn.Parameter] = (),
    extra_lr: float = 1e-3,
    extra_weight_decay: float = 0.0,
    schedule: str = "constant",
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
    freeze_after: int = 0,
    frozen_blocks: int = 0,
    frozen_extra: Sequence[torch.nn.Parameter] = (),
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, object]]:
    """Input rows of the query tokens (k, H), trained with the head's control rows by
    full-vocabulary cross-entropy at the last query position; the base model stays frozen but for
    `extra` parameters (an adapter the query alone passes through), trained at `extra_lr` with
    `extra_weight_decay` (Adam's L2). `schedule` is the learning rates' course over the steps:
    "constant", or "cosine" from the given rates down to zero at the last step.
    `on_epoch(epoch, query)` runs after each epoch (pilots evaluate there).
    After `freeze_after` epochs (0: never) the query's input rows, the lowest `frozen_blocks`
    blocks and `frozen_extra` (the part of `extra` in those blocks) stop training, and the
    remaining steps run only the blocks above (`freeze_below`): a step's cost falls with the
    blocks it runs, so later epochs cost a fraction of the first. `label_smoothing` is the
    cross-entropy's (PyTorch's: that share of each target spread over the K + 1 classes, the
    ordinary tokens' log-sum-exp among them), which bounds how far a fitted prompt's margin
    keeps growing."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    if freeze_after and not 0 < frozen_blocks < model.config.num_hidden_layers:
        raise ValueError(
            f"frozen_blocks must lie between 1 and {model.config.num_hidden_layers - 1} "
            f"when freezing, got {frozen_blocks}"
        )
    head = model.get_output_embeddings().weight.detach()[:vocab]
    soft = torch.nn.Parameter(query.detach().clone())
    control = torch.nn.Parameter(rows.detach().clone())
    groups: list[dict[str, object]] = [{"params": [soft, control]}]
    if extra:
        groups.append({"params": list(extra), "lr": extra_lr, "weight_decay": extra_weight_decay})
    opt = torch.optim.Adam(groups, lr=lr)
    steps = max(1, epochs * len(batches))
    scaled = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(schedule, t, steps))
    rng = random.Random(seed)
    order = list(range(len(batches)))
    began = time.monotonic()
    losses: list[float] = []
    seconds: list[float] = []
    for epoch in range(1, epochs + 1):
        if freeze_after and epoch == freeze_after + 1:
            for p in (soft, *frozen_extra):
                p.requires_grad_(False)  # Adam skips parameters without a gradient
            batches = freeze_below(model, batches, soft.detach(), frozen_blocks)
            log(f"[query] blocks below {frozen_blocks} and the query's rows frozen")
        rng.shuffle(order)
        total = 0.0
        for b in order:
            batch = batches[b]
            state = query_state(model, batch, soft)  # (B, H)
            others = (state @ head.T).logsumexp(-1)  # (B,)
            logits = torch.cat([state @ control.T, others[:, None]], -1)  # (B, K + 1)
            loss = F.cross_entropy(logits, labels[batch.rows], label_smoothing=label_smoothing)
            loss = loss + weight_decay * control.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            scaled.step()
            total += loss.item()
        losses.append(round(total / len(batches), 4))
        seconds.append(round(time.monotonic() - began - sum(seconds), 1))
        log(f"[query] epoch {epoch}/{epochs} loss {losses[-1]} {time.monotonic() - began:.0f}s")
        if on_epoch:
            on_epoch(epoch, soft.detach())
    info: dict[str, object] = {
        "tokens": int(query.shape[0]),
        "prompts": int(sum(len(b.rows) for b in batches)),
        "epochs": epochs,
        "lr": lr,
        "schedule": schedule,
        "epoch_losses": losses,
        "epoch_seconds": seconds,
        "seconds": round(time.monotonic() - began, 1),
    }
    if label_smoothing:
        info["label_smoothing"] = label_smoothing
    if freeze_after:
        info["frozen"] = {"after_epoch": freeze_after, "blocks": frozen_blocks}
    return soft.detach(), info
