"""A Llama-shaped model's decoder blocks as plain tensor operations on its weights.

At the tiny model's size a decode step costs per call, not per row: each block through the
modules makes a dozen `nn.Module` calls and passes transformers' decorators (deprecation shims,
the checkpointing layer's wrapper, the kernel hub's lookup) before the few matrix products it
needs. `LlamaBlocks` does the same operations in the same order on the same weights, so logits
and cache equal the modules' (`tests/engine/test_forward.py`); `bench/decode_step.py` times it.
Only sdpa attention, a SiLU MLP and bare linear projections (Llama, Mistral, Qwen2 as
`forward.DIRECT_MODEL_TYPES` admits them); anything else runs the modules (`forward.run_layers`),
as does the demo model's first-step prefill while its decision-query adapter wraps the
projections (`query_adapter.py`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.nn import functional
from transformers import DynamicCache, PreTrainedModel

from workers.engine.query_adapter import find_query_adapter


@dataclass(frozen=True)
class _Block:
    """One decoder block's weights (biases None where the model has none)."""

    layer_idx: int
    norm_in: torch.Tensor
    norm_in_eps: float
    q: tuple[torch.Tensor, torch.Tensor | None]
    k: tuple[torch.Tensor, torch.Tensor | None]
    v: tuple[torch.Tensor, torch.Tensor | None]
    o: tuple[torch.Tensor, torch.Tensor | None]
    norm_post: torch.Tensor
    norm_post_eps: float
    gate: tuple[torch.Tensor, torch.Tensor | None]
    up: tuple[torch.Tensor, torch.Tensor | None]
    down: tuple[torch.Tensor, torch.Tensor | None]


def _weights(linear: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    assert type(linear) is torch.nn.Linear, "`plain_projections` admitted the model"
    return linear.weight, linear.bias


def plain_projections(model: PreTrainedModel) -> bool:
    """Whether every projection of every block is a bare `nn.Linear` (a wrapper must run)."""
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    return all(
        type(getattr(part, name, None)) is torch.nn.Linear
        for layer in model.base_model.layers
        for part in (layer.self_attn, layer.mlp)
        for name in names
        if hasattr(part, name)
    )


def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`LlamaRMSNorm`: in float32, back to the input's dtype before the weight."""
    dtype = hidden.dtype
    hidden = hidden.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    return weight * (hidden * torch.rsqrt(variance + eps)).to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaBlocks:
    """The decoder blocks of one model, run without their modules (module docstring)."""

    def __init__(self, model: PreTrainedModel) -> None:
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.groups = self.heads // self.kv_heads
        self.blocks = []
        for layer in model.base_model.layers:
            attention, mlp = layer.self_attn, layer.mlp
            self.head_dim = attention.head_dim
            self.scaling = attention.scaling
            self.blocks.append(
                _Block(
                    layer_idx=attention.layer_idx,
                    norm_in=layer.input_layernorm.weight,
                    norm_in_eps=layer.input_layernorm.variance_epsilon,
                    q=_weights(attention.q_proj),
                    k=_weights(attention.k_proj),
                    v=_weights(attention.v_proj),
                    o=_weights(attention.o_proj),
                    norm_post=layer.post_attention_layernorm.weight,
                    norm_post_eps=layer.post_attention_layernorm.variance_epsilon,
                    gate=_weights(mlp.gate_proj),
                    up=_weights(mlp.up_proj),
                    down=_weights(mlp.down_proj),
                )
            )

    def __call__(
        self,
        hidden: torch.Tensor,  # (B, q, H)
        allowed: torch.Tensor,  # (B, 1, q, K) bool
        rotary: tuple[torch.Tensor, torch.Tensor],  # cos, sin (B, q, D)
        cache: DynamicCache,
    ) -> torch.Tensor:
        cos, sin = rotary[0][:, None], rotary[1][:, None]  # (B, 1, q, D)
        rows, width = hidden.shape[:2]
        heads = (rows, width, -1, self.head_dim)
        for block in self.blocks:
            normed = _rms_norm(hidden, block.norm_in, block.norm_in_eps)
            query = functional.linear(normed, *block.q).view(heads).transpose(1, 2)
            key = functional.linear(normed, *block.k).view(heads).transpose(1, 2)
            value = functional.linear(normed, *block.v).view(heads).transpose(1, 2)
            query = query * cos + _rotate_half(query) * sin
            key = key * cos + _rotate_half(key) * sin
            key, value = cache.update(key, value, block.layer_idx)
            attended = self._attend(query, key, value, allowed)
            hidden = hidden + functional.linear(attended.reshape(rows, width, -1), *block.o)
            normed = _rms_norm(hidden, block.norm_post, block.norm_post_eps)
            inner = functional.silu(functional.linear(normed, *block.gate)) * functional.linear(
                normed, *block.up
            )
            hidden = hidden + functional.linear(inner, *block.down)
        return hidden

    def _attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """(B, q, heads, D), grouped heads as transformers' sdpa attention groups them: one query
        position attends per key head (its heads as positions), several repeat the key heads."""
        rows, _, width, dim = query.shape
        if self.groups > 1 and width == 1:
            query = query.reshape(rows, self.kv_heads, self.groups, dim)
        elif self.groups > 1:
            key = key.repeat_interleave(self.groups, dim=1)
            value = value.repeat_interleave(self.groups, dim=1)
        out = functional.scaled_dot_product_attention(
            query, key, value, attn_mask=allowed, scale=self.scaling
        )
        return out.reshape(rows, -1, width, dim).transpose(1, 2)


_BUILT: weakref.WeakKeyDictionary[PreTrainedModel, LlamaBlocks | None] = weakref.WeakKeyDictionary()


def llama_blocks(model: PreTrainedModel) -> LlamaBlocks | None:
    """`model`'s blocks as tensor operations, built once per model; None where the modules must run (attention other than sdpa, an
    activation other than SiLU, wrapped projections: the decision-query adapter's while it is
    active)."""
    adapter = find_query_adapter(model)
    if adapter is not None and adapter.active:
        return None
    if model not in _BUILT:
        config = model.config
        plain = config._attn_implementation == "sdpa" and config.hidden_act == "silu"
        plain = plain and plain_projections(model)
        _BUILT[model] = LlamaBlocks(model) if plain else None
    return _BUILT[model]


def use_llama_blocks(model: PreTrainedModel, on: bool) -> None:
    """Run `model`'s blocks as tensor operations (`on`, where `llama_blocks` can) or as modules:
    what `bench/decode_step.py` compares."""
    _BUILT.pop(model, None)
    if not on:
        _BUILT[model] = None
