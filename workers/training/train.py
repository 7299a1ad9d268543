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
    #: Train the answer after the control token (at `prompt_len`) to match the teacher's
    #: distribution on the same text without that token (`TrainConfig.distill_weight`).
    distill: bool = False


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
    #: Separate learning rate for the output embedding (the new control-token rows) when set.
    embedding_lr: float | None = None
    log_every: int = 25
    checkpoint_every: int = 100
    detach_input_embeddings: bool = False
    frozen_vocab: int | None = None
    #: bfloat16 autocast for the forward and backward passes (weights and optimizer stay float32):
    #: on a CPU with AVX512-BF16 a step of the demo recipe ran 2-4x faster; only where
    #: `cpu_has_bf16()`, since elsewhere it is emulated and far slower.
    bf16_autocast: bool = False
    #: Weight of the KL divergence from the teacher (the base model, given the prompt and answer
    #: without the control token) at the answer positions of `Encoded.distill` examples; their
    #: answer tokens then train by this loss instead of cross-entropy.
    distill_weight: float = 0.0


def cpu_has_bf16() -> bool:
    """Does this CPU compute in bfloat16 natively (AVX512-BF16 or AMX)? Without it, autocast
    emulates bfloat16 and a demo training step ran 15-30x slower than float32 (AMD EPYC, AVX2)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
    first_only_from: int | None = None,
) -> list[Encoded]:
    """Tokenise each example as prompt ids + response ids (+ end of turn when not truncated).

    Examples from index `first_only_from` on keep only the first response token: they train
    the decision alone, at about half the cost."""
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out: list[Encoded] = []
    for i, ex in enumerate(examples):
        response = responses[i] if responses is not None else ex.response
        # As the engine encodes it: control and role tokens typed in a message stay plain text.
        prompt = encode_prompt(tokenizer, ex.messages)
        reply = [*tokenizer(response, add_special_tokens=False).input_ids, eot]
        keep = 1 if first_only_from is not None and i >= first_only_from else max_response_tokens
        out.append(Encoded(tuple(prompt + reply[:keep]), len(prompt)))
    return out


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask, next-token targets (-100 on padding), masks of
    the first response position and of prompt positions, and the distillation inputs (`_distill`)."""
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
        **_distill(batch, pad_id, width),
    }


def _distill(batch: Sequence[Encoded], pad_id: int, width: int) -> dict[str, torch.Tensor]:
    """Distillation positions: `distill` (B, T) marks the student's answer positions (from the
    control token on); `teacher_ids` / `teacher_mask` (D, T) hold the distilled rows without
    their control token, and `teacher_at` (D, T) the teacher positions that predict the same
    tokens (one earlier), in the same order."""
    rows = [e for e in batch if e.distill]
    distill = torch.zeros((len(batch), width), dtype=torch.bool)  # (B, T)
    teacher_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (D, T)
    teacher_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (D, T)
    teacher_at = torch.zeros((len(rows), width), dtype=torch.bool)  # (D, T)
    d = 0
    for row, e in enumerate(batch):
        if not e.distill:
            continue
        # answer positions: the control token's (predicting the first answer token) onwards;
        # a first-token-only row still has that one position
        answer = max(1, len(e.ids) - e.prompt_len - 1)
        distill[row, e.prompt_len : e.prompt_len + answer] = True
        plain = e.ids[: e.prompt_len] + e.ids[e.prompt_len + 1 :]
        teacher_ids[d, : len(plain)] = torch.tensor(plain)
        teacher_mask[d, : len(plain)] = 1
        teacher_at[d, e.prompt_len - 1 : e.prompt_len - 1 + answer] = True
        d += 1
    return {
        "distill": distill,
        "teacher_ids": teacher_ids,
        "teacher_mask": teacher_mask,
        "teacher_at": teacher_at,
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


def _head(model: PreTrainedModel, hidden: torch.Tensor, frozen_vocab: int | None) -> torch.Tensor:
    """Output logits; with a frozen vocabulary only the new rows of the head get a gradient."""
    if frozen_vocab is None:
        return model.lm_head(hidden)
    weight = model.get_output_embeddings().weight  # (V, H)
    old = hidden @ weight[:frozen_vocab].detach().T  # (N, V_old)
    return torch.cat([old, hidden @ weight[frozen_vocab:].T], dim=-1)  # (N, V)


def distill_loss(
    model: PreTrainedModel,
    hidden: torch.Tensor,
    batch: dict[str, torch.Tensor],
    teacher: PreTrainedModel,
) -> torch.Tensor:
    """Mean KL(teacher || student) over the answer positions of the distilled rows, over the
    teacher's vocabulary (control tokens are masked after the first step when serving)."""
    with torch.no_grad():
        t_hidden = teacher.base_model(
            input_ids=batch["teacher_ids"], attention_mask=batch["teacher_mask"]
        ).last_hidden_state
        t_logp = F.log_softmax(teacher.lm_head(t_hidden[batch["teacher_at"]]).float(), -1)  # (N, V)
    vocab = t_logp.shape[-1]
    s_hidden = hidden[batch["distill"]]  # (N, H)
    s_logits = s_hidden @ model.get_output_embeddings().weight[:vocab].T  # (N, V)
    s_logp = F.log_softmax(s_logits.float(), -1)
    return F.kl_div(s_logp, t_logp, log_target=True, reduction="batchmean")


def response_loss(
    model: PreTrainedModel,
    batch: dict[str, torch.Tensor],
    cfg: TrainConfig,
    teacher: PreTrainedModel | None = None,
) -> tuple[torch.Tensor, float]:
    """Weighted loss and first-token accuracy of one batch (head applied at response positions
    only), plus the distillation loss when a teacher is given."""
    embeds = model.get_input_embeddings()(batch["input_ids"])  # (B, T, H)
    if cfg.detach_input_embeddings:
        embeds = embeds.detach()
    hidden = model.base_model(
        inputs_embeds=embeds, attention_mask=batch["attention_mask"]
    ).last_hidden_state
    sel = batch["targets"] != -100  # (B, T)
    distilled = teacher is not None and bool(batch["distill"].any())
    if distilled:
        sel &= ~batch["distill"]  # those answer tokens train by the KL term instead
    if cfg.prompt_lm_weight == 0:
        sel &= ~batch["in_prompt"]
    logits = _head(model, hidden[sel], cfg.frozen_vocab).float()  # (N, V)
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
    if distilled and teacher is not None:
        loss = loss + cfg.distill_weight * distill_loss(model, hidden, batch, teacher)
    acc = (logits[is_first].argmax(-1) == targets[is_first]).float().mean().item()
    return loss, acc


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _param_groups(model: PreTrainedModel, cfg: TrainConfig) -> list[dict[str, object]]:
    """One optimizer group, or two when the (new) token rows get their own learning rate."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.embedding_lr is None:
        return [{"params": params, "lr": cfg.lr, "lr_scale": 1.0}]
    emb = model.get_output_embeddings().weight
    rest = [p for p in params if p is not emb]
    scale = cfg.embedding_lr / cfg.lr
    return [
        {"params": rest, "lr": cfg.lr, "lr_scale": 1.0},
        {"params": [emb], "lr": cfg.embedding_lr, "lr_scale": scale},
    ]


def _freeze_old_rows(model: PreTrainedModel, frozen_vocab: int) -> None:
    """Zero the gradient of pre-existing vocabulary rows so only the new token rows move."""

    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:frozen_vocab] = 0
        return grad

    weights = {
        id(m.weight): m.weight
        for m in (model.get_input_embeddings(), model.get_output_embeddings())
    }
    for weight in weights.values():
        if weight.requires_grad:
            weight.register_hook(hook)


def train(
    model: PreTrainedModel,
    data: Sequence[Encoded],
    cfg: TrainConfig,
    *,
    pad_id: int,
    out_dir: Path,
    resume: bool = False,
    log: Callable[[str], None] = log_line,
    teacher: PreTrainedModel | None = None,
) -> dict[str, object]:
    """Train the parameters that require grad; return a summary (steps, seconds, final loss).

    `teacher` (frozen, in eval mode) is the model distilled into at `Encoded.distill` rows."""
    torch.manual_seed(cfg.seed)
    if cfg.frozen_vocab is not None:
        _freeze_old_rows(model, cfg.frozen_vocab)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        _param_groups(model, cfg), weight_decay=cfg.weight_decay, betas=(0.9, 0.98)
    )
    start = load_checkpoint(out_dir, model, opt) if resume and has_checkpoint(out_dir) else 0
    if start:
        log(f"[train] resumed from {out_dir / CHECKPOINT_DIR} at step {start}/{cfg.steps}")
    model.train()
    began = time.monotonic()
    loss_avg = acc_avg = float("nan")
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg) * group["lr_scale"]
        batch = collate(
            [data[i] for i in batch_indices(len(data), cfg.batch_size, step, cfg.seed)], pad_id
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
            loss, acc = response_loss(model, batch, cfg, teacher)
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
