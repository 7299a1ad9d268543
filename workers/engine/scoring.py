"""Prefill-only scoring for calibration: first-token summaries with no decoding.

One forward pass per batch and only the last position's logits (`logits_to_keep=1`), so the
cost is a prefill. Prompts stream through: a window of them is tokenized, sorted by length so
each batch wastes little padding, scored, and yielded back in input order before the next
window is read; 100k prompts never sit in memory at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from workers.engine.model import LoadedModel, Prompt
from workers.engine.prefill import (
    decision_logits,
    left_pad,
    suffix_adapter,
    summaries_to_rows,
    with_decision_suffix,
)
from workers.engine.processor import first_token_summary, refusal_probabilities
from workers.engine.types import FirstTokenSummary


@dataclass(frozen=True)
class ScoreItem:
    """A prompt to score, the temperature its L_T is wanted at, and a caller's key."""

    prompt: Prompt
    temperature: float = 1.0
    key: Any = None  # the caller's own handle, given back untouched


@dataclass(frozen=True)
class ScoredPrompt:
    """One prompt's first-token summary; `index` is its position in the input stream."""

    index: int
    key: Any
    prompt_tokens: int
    summary: FirstTokenSummary


@torch.inference_mode()
def score_batch(
    lm: LoadedModel, encoded: list[list[int]], temperatures: list[float]
) -> list[FirstTokenSummary]:
    """Summaries of one batch of tokenized prompts from a single prefill."""
    batch = left_pad(with_decision_suffix(lm, encoded), lm.pad_id, lm.device)
    with suffix_adapter(lm):
        out = lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
            logits_to_keep=1,
        )
    logits = decision_logits(lm, out.logits[:, -1, :].float())  # (B, V)
    temp = torch.tensor(temperatures, dtype=torch.float32, device=lm.device)  # (B,)
    summary = first_token_summary(logits, lm.refusal_ids, temp)
    return summaries_to_rows(summary, refusal_probabilities(summary.s, summary.l1), temperatures)


def _batches(lengths: list[int], batch_size: int, max_batch_tokens: int) -> Iterator[list[int]]:
    """Positions of a window grouped by length: at most `batch_size` rows and padded tokens."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    group: list[int] = []
    for i in order:
        width = lengths[i]  # sorted ascending: the newcomer is the longest of the group
        if group and (len(group) >= batch_size or width * (len(group) + 1) > max_batch_tokens):
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def score_prompts(
    lm: LoadedModel,
    items: Iterable[ScoreItem | str],
    *,
    batch_size: int = 32,
    window: int = 1024,
    max_batch_tokens: int = 16384,
) -> Iterator[ScoredPrompt]:
    """Stream summaries for `items` in input order, reading `window` items at a time."""
    if batch_size < 1 or window < 1:
        raise ValueError("batch_size and window must be >= 1")
    stream = (ScoreItem(x) if isinstance(x, str) else x for x in items)
    offset = 0
    while chunk := list(itertools.islice(stream, window)):
        encoded = [lm.encode(item.prompt) for item in chunk]
        lengths = [len(e) for e in encoded]
        found: list[FirstTokenSummary | None] = [None] * len(chunk)
        for group in _batches(lengths, batch_size, max_batch_tokens):
            temps = [chunk[i].temperature for i in group]
            rows = score_batch(lm, [encoded[i] for i in group], temps)
            for i, row in zip(group, rows, strict=True):
                found[i] = row
        for i, item in enumerate(chunk):
            summary = found[i]
            assert summary is not None
            yield ScoredPrompt(offset + i, item.key, lengths[i], summary)
        offset += len(chunk)
