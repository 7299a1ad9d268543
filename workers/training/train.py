"""The refusal-token fine-tuning loop: encoding, batching, weighted loss, checkpoints, resume.

The loss is the cross-entropy of the whole response (control token + text + end of turn), with
the first response token weighted separately, so the decision concentrates in that token. Logits
are computed only at response positions (the head is the costly part of a large vocabulary).
Batches are a pure function of (seed, step), so `--resume` restores weights, optimizer, step and
RNG state and continues exactly where it stopped.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workers.engine.prompt_tokens import encode_prompt
from workers.training.checkpoint import (
    CHECKPOINT_DIR,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from workers.training.data import Example


@dataclass(frozen=True)
class Encoded:
    """Token ids of prompt + response, and where the response starts."""

    ids: tuple[int, ...]
    prompt_len: int


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (recorded in the model card)."""

    steps: int
    batch_size: int
    lr: float
    seed: int = 0
    warmup: int = 20
    weight_decay: float = 0.0
    first_token_weight: float = 2.0
    #: Language-modelling loss on the prompt too: teaches a from-scratch model which words go together.
    prompt_lm_weight: float = 0.0
    log_every: int = 25
    checkpoint_every: int = 100


def log_line(message: str) -> None:
    """Progress output: printed and flushed at once (training logs are often redirected)."""
    print(message, flush=True)


def prompt_text(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]) -> str:
    """The chat-template prompt whose next token is the control token."""
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)


def encode(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_response_tokens: int = 64,
    responses: Sequence[str] | None = None,
) -> list[Encoded]:
    """Tokenise each example as prompt ids + response ids (+ end of turn when not truncated)."""
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out: list[Encoded] = []
    for i, ex in enumerate(examples):
        response = responses[i] if responses is not None else ex.response
        # As the engine encodes it: control and role tokens typed in a message stay plain text.
        prompt = encode_prompt(tokenizer, ex.messages)
        reply = [*tokenizer(response, add_special_tokens=False).input_ids, eot]
        out.append(Encoded(tuple(prompt + reply[:max_response_tokens]), len(prompt)))
    return out


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask, next-token targets (-100 on padding), and masks of
    the first response position and of prompt positions."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)  # (B, T)
    first = torch.zeros((len(batch), width), dtype=torch.bool)  # (B, T)
    in_prompt = torch.zeros((len(batch), width), dtype=torch.bool)  # (B, T)
    for row, e in enumerate(batch):
        n = len(e.ids)
        ids[row, :n] = torch.tensor(e.ids)
        mask[row, :n] = 1
        # position t predicts token t+1; responses start at prompt_len
        targets[row, : n - 1] = ids[row, 1:n]
        first[row, e.prompt_len - 1] = True
        in_prompt[row, : e.prompt_len - 1] = True
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "targets": targets,
        "first": first,
        "in_prompt": in_prompt,
    }


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of batch `step`: consecutive slices of per-epoch seeded permutations."""
    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = random.Random(seed * 100_003 + epoch).sample(range(n), n)
        out.extend(perm[offset : offset + batch_size - len(out)])
    return out


def response_loss(
    model: PreTrainedModel,
    batch: dict[str, torch.Tensor],
    cfg: TrainConfig,
) -> tuple[torch.Tensor, float]:
    """Weighted loss and first-token accuracy of one batch (head applied at response positions
    only)."""
    hidden = model.base_model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    sel = batch["targets"] != -100  # (B, T)
    if cfg.prompt_lm_weight == 0:
        sel &= ~batch["in_prompt"]
    logits = model.lm_head(hidden[sel]).float()  # (N, V)
    targets = batch["targets"][sel]  # (N,)
    is_first = batch["first"][sel]  # (N,)
    in_prompt = batch["in_prompt"][sel]  # (N,)
    rest = ~is_first & ~in_prompt  # (N,)
    ce = F.cross_entropy(logits, targets, reduction="none")  # (N,)
    loss = cfg.first_token_weight * ce[is_first].mean()
    if rest.any():
        loss = loss + ce[rest].mean()
    if cfg.prompt_lm_weight and in_prompt.any():
        loss = loss + cfg.prompt_lm_weight * ce[in_prompt].mean()
    acc = (logits[is_first].argmax(-1) == targets[is_first]).float().mean().item()
    return loss, acc


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(
    model: PreTrainedModel,
    data: Sequence[Encoded],
    cfg: TrainConfig,
    *,
    pad_id: int,
    out_dir: Path,
    resume: bool = False,
    log: Callable[[str], None] = log_line,
) -> dict[str, object]:
    """Train the parameters that require grad; return a summary (steps, seconds, final loss)."""
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    start = load_checkpoint(out_dir, model, opt) if resume and has_checkpoint(out_dir) else 0
    if start:
        log(f"[train] resumed from {out_dir / CHECKPOINT_DIR} at step {start}/{cfg.steps}")
    model.train()
    began = time.monotonic()
    loss_avg = acc_avg = float("nan")
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        batch = collate(
            [data[i] for i in batch_indices(len(data), cfg.batch_size, step, cfg.seed)], pad_id
        )
        loss, acc = response_loss(model, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        beta = 0.9 if not math.isnan(loss_avg) else 0.0
        loss_avg = beta * (0.0 if math.isnan(loss_avg) else loss_avg) + (1 - beta) * loss.item()
        acc_avg = beta * (0.0 if math.isnan(acc_avg) else acc_avg) + (1 - beta) * acc
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            elapsed = time.monotonic() - began
            eta = elapsed / (done - start) * (cfg.steps - done)
            log(
                f"[train] step {done}/{cfg.steps} loss {loss_avg:.4f} first-token acc {acc_avg:.3f} "
                f"lr {_lr_at(step, cfg):.2e} elapsed {elapsed:.0f}s eta {eta:.0f}s"
            )
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_checkpoint(out_dir, model, opt, done)  # the last one lets --resume skip to saving
    model.eval()
    return {
        "config": asdict(cfg),
        "start_step": start,
        "steps": cfg.steps,
        "seconds": round(time.monotonic() - began, 1),
        "final_loss": round(loss_avg, 4),
        "final_first_token_acc": round(acc_avg, 4),
    }
