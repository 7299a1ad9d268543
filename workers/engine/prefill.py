"""Prefill inputs shared by decoding and scoring: left-padded prompts, per-row summaries."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from workers.engine.model import LoadedModel
from workers.engine.processor import NEG_INF, SummaryTensors
from workers.engine.types import FirstTokenSummary


@dataclass(frozen=True)
class PaddedBatch:
    """Left-padded prompts and the position ids generate would use for them."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    lengths: list[int]


def with_decision_suffix(lm: LoadedModel, encoded: Sequence[Sequence[int]]) -> list[list[int]]:
    """Prompts as the first step reads them: each followed by the manifest's decision suffix."""
    return [[*e, *lm.manifest.decision_ids] for e in encoded]


def suffix_adapter(lm: LoadedModel) -> AbstractContextManager[None]:
    """Around the first step's forward of a left-padded batch: the model's query adapter, if it
    has one, applies at the decision suffix's columns (the last ones) only."""
    suffix = len(lm.manifest.decision_ids)
    if lm.query_adapter is None or not suffix:
        return nullcontext()
    return lm.query_adapter.at_last(suffix)


def decision_logits(lm: LoadedModel, logits: torch.Tensor) -> torch.Tensor:
    """First-step logits (B, V) as the decision reads them. After a decision suffix only the
    control tokens are candidates: the suffix's ordinary logits predict nothing an answer uses."""
    if not lm.manifest.decision_ids:
        return logits
    control = logits.index_select(1, lm.control_ids)  # (B, K + 1)
    return torch.full_like(logits, NEG_INF).index_copy_(1, lm.control_ids, control)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> PaddedBatch:
    """Left-pad token lists; positions count real tokens only (as `generate` does)."""
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, L)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 0)  # (B, L)
    return PaddedBatch(ids.to(device), mask.to(device), pos.to(device), lengths)


def summaries_to_rows(
    summary: SummaryTensors, p: torch.Tensor, temperature: list[float]
) -> list[FirstTokenSummary]:
    """Per-row `FirstTokenSummary` from batch tensors (one device->host copy each).

    Greedy rows (temperature 0) have no L_T of their own: their summary is taken at T = 1.
    """
    s, m, l1, lt = (x.double().cpu().tolist() for x in summary)
    probs = p.cpu().tolist()
    temps = [t if t > 0 else 1.0 for t in temperature]
    return [
        FirstTokenSummary(tuple(s[i]), m[i], l1[i], lt[i], temps[i], tuple(probs[i]))
        for i in range(len(m))
    ]
