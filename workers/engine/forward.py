"""The running batch's forward passes: a prefill of joining rows and one decode step.

A forward of a small model costs per operation, not per row, and transformers' forward adds
wrappers, output capturing and a causal-mask builder to every call. For Llama-shaped models
(`DIRECT_MODEL_TYPES`) both passes call the embedding, rotary embedding, decoder layers, norm and
head directly with a 4-D mask, with logits equal to the last bit: for the tiny model a 20-row
decode step ran at 0.62-0.82x, a whole engine step at about 0.83x, and a 3-row prefill at about
0.82x (`bench/decode_step.py`, docs/scaling.md). With sdpa attention the blocks themselves run
as tensor operations (`llama_blocks.py`); `run_layers` calls them as modules, the way the decision
query's training does (`workers/training/decision_query.py`). Any other architecture keeps
the transformers forward, so the engine serves every causal LM as before.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel

from workers.engine.cache_names import cache_kwargs
from workers.engine.llama_blocks import llama_blocks
from workers.engine.prefill import PaddedBatch

#: Model types whose forward is embed -> rotary -> layers -> norm -> head, nothing more (no
#: embedding scale, soft-capping or sliding window).
DIRECT_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})


def decodes_directly(model: PreTrainedModel) -> bool:
    """Whether the direct passes may stand in for `model`'s forward."""
    config = model.config
    return (
        config.model_type in DIRECT_MODEL_TYPES
        and not getattr(config, "sliding_window", None)
        and config._attn_implementation in ("sdpa", "eager")
    )


def prefill_logits(
    model: PreTrainedModel, batch: PaddedBatch, cache: DynamicCache, keep: int, *, direct: bool
) -> torch.Tensor:
    """Logits (N, keep, V) of the last `keep` positions of a left-padded prefill, `cache` filled;
    `direct`: call the decoder's parts (`decodes_directly`).

    Directly, each real position sees the real positions up to itself; a padding position sees
    only itself (a row of nothing but masked scores is NaN in some attention kernels, and its keys
    would carry the NaN into the cache), and no real position ever sees it."""
    ids, mask, pos = batch.input_ids, batch.attention_mask, batch.position_ids
    if not direct:
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            **cache_kwargs(model, cache),
            logits_to_keep=keep,
        )
        return out.logits
    base, width = model.base_model, ids.shape[1]
    real = mask.bool()  # (N, L)
    causal = torch.ones((width, width), dtype=torch.bool, device=real.device).tril()
    allowed = causal & real[:, None, :]  # (N, L, L)
    allowed |= torch.eye(width, dtype=torch.bool, device=real.device)
    blocks = llama_blocks(model)
    if blocks is not None:
        hidden = blocks(blocks.embed(ids), allowed[:, None], pos, cache)
        return blocks.logits(hidden[:, -keep:])  # (N, keep, V)
    hidden = run_layers(model, base.embed_tokens(ids), allowed[:, None], pos, cache)
    return model.get_output_embeddings()(base.norm(hidden[:, -keep:]))  # (N, keep, V)


def decode_logits(
    model: PreTrainedModel,
    tokens: torch.Tensor,  # (B,) next input token per row
    attention_mask: torch.Tensor,  # (B, W + 1) the rows' columns, the new one included
    position_ids: torch.Tensor,  # (B,) the new token's position per row
    cache: DynamicCache,
    *,
    direct: bool,
) -> torch.Tensor:
    """Last-position logits (B, V) of one decode step, the cache extended by a column;
    `direct`: call the decoder's parts (`decodes_directly`)."""
    if not direct:
        out = model(
            input_ids=tokens[:, None],  # (B, 1)
            attention_mask=attention_mask,
            position_ids=position_ids[:, None],  # (B, 1)
            use_cache=True,
            **cache_kwargs(model, cache),
        )
        return out.logits[:, -1, :]
    allowed = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, W + 1)
    blocks = llama_blocks(model)
    if blocks is not None:
        hidden = blocks(blocks.embed(tokens[:, None]), allowed, position_ids[:, None], cache)
        return blocks.logits(hidden)[:, -1]  # (B, V)
    base = model.base_model
    hidden = base.embed_tokens(tokens[:, None])  # (B, 1, H)
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
