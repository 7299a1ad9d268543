"""The control tokens' input rows on a frozen model: one-token soft prompts.

Only the six input rows train; every weight of the base model stays as it is. `[respond]` is
trained so that an answer after it is the base model's answer without it (KL divergence from the
base model's next-token distribution over the base model's own greedy answers), for whoever runs
the weights with `[respond]` in context (the service keeps it out, see `respond_in_context`).
A refusal token is trained to make the base model write its category's refusal (cross-entropy
on the recipe's replies), for a policy that gives no refusal message of its own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import PreTrainedModel


@dataclass(frozen=True)
class SoftItem:
    """One training sequence: prompt ids, the control token's id, and the answer ids after it.
    `distil`: match the base model's distribution on the answer (else cross-entropy on it)."""

    prompt: list[int]
    control: int
    answer: list[int]
    distil: bool


def _left_pad(rows: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # (B, T)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])  # (B, T)
    return ids, mask


def _batch_loss(
    model: PreTrainedModel,
    rows: torch.Tensor,  # (K, H) the control tokens' input rows being trained
    first_id: int,
    vocab: int,
    items: Sequence[SoftItem],
    pad: int,
) -> torch.Tensor:
    student_ids, student_mask = _left_pad([[*i.prompt, i.control, *i.answer] for i in items], pad)
    embeds = model.get_input_embeddings()(student_ids)  # (B, T, H)
    control = student_ids >= first_id  # (B, T)
    soft = rows[(student_ids - first_id).clamp(0, rows.shape[0] - 1)]  # (B, T, H)
    embeds = torch.where(control[..., None], soft, embeds)
    logits = model(inputs_embeds=embeds, attention_mask=student_mask).logits[..., :vocab]
    width = student_ids.shape[1]
    teacher_logits = None
    if any(i.distil for i in items):
        with torch.no_grad():
            t_ids, t_mask = _left_pad([i.prompt + i.answer for i in items], pad)
            teacher_logits = model(input_ids=t_ids, attention_mask=t_mask).logits[..., :vocab]
    losses = []
    for b, item in enumerate(items):
        n = len(item.answer)
        # the control position and the answer's own positions predict the answer's tokens
        s = logits[b, width - n - 1 : width - 1].float()  # (n, V)
        if item.distil:
            assert teacher_logits is not None
            tw = teacher_logits.shape[1]
            t = teacher_logits[b, tw - n - 1 : tw - 1].float()  # (n, V)
            losses.append(
                F.kl_div(
                    F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="sum"
                )
                / n
            )
        else:
            losses.append(F.cross_entropy(s, torch.tensor(item.answer)))
    return torch.stack(losses).mean()


def train_soft_tokens(
    model: PreTrainedModel,
    items: Sequence[SoftItem],
    *,
    first_id: int,
    count: int,
    steps: int,
    batch_size: int,
    lr: float,
    pad: int,
    seed: int,
    log: Callable[[str], None],
) -> dict[str, object]:
    """Train the input rows of token ids `first_id .. first_id + count - 1`; the rest is frozen."""
    emb = model.get_input_embeddings().weight
    vocab = first_id
    for p in model.parameters():
        p.requires_grad_(False)
    rows = torch.nn.Parameter(emb[first_id : first_id + count].detach().clone())
    opt = torch.optim.Adam([rows], lr=lr)
    rng = random.Random(seed)
    began, losses = time.monotonic(), []
    for step in range(1, steps + 1):
        batch = rng.sample(list(items), min(batch_size, len(items)))
        loss = _batch_loss(model, rows, first_id, vocab, batch, pad)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 5 == 0 or step == steps:
            log(
                f"[soft] step {step}/{steps} loss {sum(losses[-5:]) / len(losses[-5:]):.4f} "
                f"elapsed {time.monotonic() - began:.0f}s"
            )
    with torch.no_grad():
        emb[first_id : first_id + count] = rows.detach()
    return {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "items": len(items),
        "final_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4),
        "seconds": round(time.monotonic() - began, 1),
    }
