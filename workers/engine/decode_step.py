"""One decode step that calls a Llama-shaped decoder's parts directly.

A decode step of a small model costs per operation, not per row, and transformers' forward adds
wrappers, output capturing and a causal-mask builder to every call: for the tiny model a 20-row
step ran at 0.62-0.82x when the embedding, rotary embedding, decoder layers, norm and head are
called directly with a 4-D mask, with logits equal to the last bit, and a whole engine step at
about 0.83x (`bench/decode_step.py`, docs/scaling.md). `run_layers` is that loop, shared with the
decision query's training (`workers/training/decision_query.py`). Only
architectures whose forward is exactly that sequence take this path (`DIRECT_MODEL_TYPES`);
any other keeps the transformers forward, so the engine serves every causal LM as before.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel

from workers.engine.cache_names import cache_kwargs

#: Model types whose forward is embed -> rotary -> layers -> norm -> head, nothing more (no
#: embedding scale, soft-capping or sliding window).
DIRECT_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})


def decodes_directly(model: PreTrainedModel) -> bool:
    """Whether `direct_decode_logits` may stand in for `model`'s forward."""
    config = model.config
    return (
        config.model_type in DIRECT_MODEL_TYPES
        and not getattr(config, "sliding_window", None)
        and config._attn_implementation in ("sdpa", "eager")
    )


def direct_decode_logits(
    model: PreTrainedModel,
    tokens: torch.Tensor,  # (B,) next input token per row
    attention_mask: torch.Tensor,  # (B, W + 1) the rows' columns, the new one included
    position_ids: torch.Tensor,  # (B,) the new token's position per row
    cache: DynamicCache,
) -> torch.Tensor:
    """Last-position logits (B, V) of one decode step, the cache extended by a column."""
    base = model.base_model
    hidden = base.embed_tokens(tokens[:, None])  # (B, 1, H)
    allowed = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, W + 1)
    hidden = run_layers(model, hidden, allowed, position_ids[:, None], cache)
    return model.get_output_embeddings()(base.norm(hidden))[:, -1]  # (B, V)


def run_layers(
    model: PreTrainedModel,
    hidden: torch.Tensor,  # (B, q, H) the new positions' input states
    allowed: torch.Tensor,  # (B, 1, q, K) bool: which of the K cache + new columns each sees
    position_ids: torch.Tensor,  # (B, q)
    cache: DynamicCache,
    first: int = 0,
    stop: int | None = None,
) -> torch.Tensor:
    """`hidden` through the decoder's blocks `first` to `stop` (not normed), against `cache`,
    each block called as the decoder's forward calls it; (B, q, H)."""
    base = model.base_model
    mask = allowed
    if model.config._attn_implementation != "sdpa":  # eager attention adds its mask
        mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(
            ~allowed, torch.finfo(hidden.dtype).min
        )
    rotary = base.rotary_emb(hidden, position_ids=position_ids)
    for layer in base.layers[first:stop]:
        hidden = layer(
            hidden,
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=True,
            position_embeddings=rotary,
            **cache_kwargs(layer, cache),
        )
    return hidden
