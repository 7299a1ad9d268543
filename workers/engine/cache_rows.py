"""Rows of a left-padded KV cache: merged, selected and trimmed (`continuous.RunningBatch`).

Every row keeps its own positions: a narrower cache joins a wider one with masked zero columns on
its left, and columns that no row attends to any more are cut off the left."""

from __future__ import annotations

import torch
from transformers import DynamicCache


def pad_left(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero columns on the left of the sequence axis (dim 2 of a cache, dim 1 of a mask)."""
    axis = 2 if x.dim() == 4 else 1
    missing = width - x.shape[axis]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[axis] = missing
    return torch.cat([x.new_zeros(shape), x], dim=axis)


def merge_rows(
    cache: DynamicCache,
    attn: torch.Tensor,  # (B, W)
    joining: DynamicCache,
    joining_attn: torch.Tensor,  # (N, L)
) -> torch.Tensor:
    """Append `joining`'s rows to `cache` in place, both left-padded to the wider width; returns
    the merged mask (B + N, max(W, L))."""
    width = max(attn.shape[1], joining_attn.shape[1])
    for mine, theirs in zip(cache.layers, joining.layers, strict=True):
        mine.keys = torch.cat([pad_left(mine.keys, width), pad_left(theirs.keys, width)])
        mine.values = torch.cat([pad_left(mine.values, width), pad_left(theirs.values, width)])
    return torch.cat([pad_left(attn, width), pad_left(joining_attn, width)])


def keep_columns(cache: DynamicCache, width: int) -> None:
    """Keep the first `width` columns of every layer, in place (by hand: `DynamicCache.crop`'s
    argument changed meaning across transformers versions)."""
    for layer in cache.layers:
        layer.keys = layer.keys[..., :width, :]
        layer.values = layer.values[..., :width, :]


def drop_unused_columns(cache: DynamicCache, attn: torch.Tensor) -> torch.Tensor:
    """Cut the leading columns no row attends to off `cache` (in place) and `attn` (returned)."""
    unused = int(attn.any(dim=0).to(torch.uint8).argmax())  # leading all-pad columns
    if not unused:
        return attn
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, unused:, :]
        layer.values = layer.values[:, :, unused:, :]
    return attn[:, unused:]
