"""A Llama-shaped model's decoder as plain tensor operations on its weights.

At the tiny model's size a decode step costs per call, not per row: each block through the
modules makes a dozen `nn.Module` calls and passes transformers' decorators (deprecation shims,
the checkpointing layer's wrapper, the kernel hub's lookup) before the few matrix products it
needs. `LlamaBlocks` does the same operations in the same order on the same weights, takes the
rotary embedding from a table of every position, and runs the embedding, final norm and head
without their modules too: logits and cache equal the modules' (bit for bit on the tiny model;
`tests/engine/test_llama_blocks.py`); `bench/decode_step.py` times it. The projections are not
stacked into one product per block: that saved about 4% of a tiny decode step here, and would
keep a second copy of most of a model's weights. Only sdpa attention, a SiLU MLP, bare linear
projections and a rotary embedding that does not change with the length (Llama, Mistral, Qwen2
as `forward.DIRECT_MODEL_TYPES` admits them); anything else runs the modules
(`forward.run_layers`), as does the demo model's first-step prefill while its decision-query
adapter wraps the projections (`query_adapter.py`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.nn import functional
from transformers import DynamicCache, PreTrainedModel

from workers.engine.query_adapter import find_query_adapter

Weights = tuple[torch.Tensor, torch.Tensor | None]

#: Rotary embeddings whose frequencies do not change with the length (a table can hold them).
STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3"})


@dataclass(frozen=True)
class _Block:
    """One decoder block's weights (biases None where the model has none)."""

    layer_idx: int
    norm_in: torch.Tensor
    norm_in_eps: float
    q: Weights
    k: Weights
    v: Weights
    o: Weights
    norm_post: torch.Tensor
    norm_post_eps: float
    gate: Weights
    up: Weights
    down: Weights


def _weights(linear: torch.nn.Module) -> Weights:
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
    """`LlamaRMSNorm`: in float32, back to the input's dtype before the weight. A float32 input
    takes torch's fused `rms_norm`, the same values to the bit in fewer operations (0.7-0.95x
    the time here, decode and prefill shapes alike)."""
    dtype = hidden.dtype
    if dtype == torch.float32:
        return functional.rms_norm(hidden, weight.shape, weight, eps)
    hidden = hidden.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    return weight * (hidden * torch.rsqrt(variance + eps)).to(dtype)


def _rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`x * cos + rotate_half(x) * sin` with the halves' sign folded into `sin`
    (`_rotary_table`): rotate_half(x) = (-x2, x1), and (-a) * b = a * (-b) exactly, so one roll
    stands in for two slices, a negation and a concatenation, equal to the bit."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


def _rotary_table(model: PreTrainedModel, dtype: torch.dtype) -> torch.Tensor:
    """cos and sin side by side for every position, (P, 2D), computed as the rotary module
    computes them (the same operation on each element: equal to the last bit); the first half
    of each sin negated, for `_rotated`."""
    rotary = model.base_model.rotary_emb
    positions = torch.arange(model.config.max_position_embeddings, device=rotary.inv_freq.device)
    freqs = positions[:, None].float() * rotary.inv_freq.float()
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos() * rotary.attention_scaling, emb.sin() * rotary.attention_scaling
    half = sin.shape[-1] // 2
    signed = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)
    return torch.cat((cos, signed), dim=-1).to(dtype)


def _fingerprint(tensor: torch.Tensor) -> tuple[int, int]:
    """Where a tensor lives and how often it was written in place: what was computed from it is
    stale once this changes (a loaded state, a move to another device)."""
    try:
        version = tensor._version
    except RuntimeError:  # an inference tensor counts no writes (none are allowed outside)
        version = -1
    return tensor.data_ptr(), version


class LlamaBlocks:
    """The decoder of one model, run without its modules (module docstring)."""

    def __init__(self, model: PreTrainedModel) -> None:
        config, base = model.config, model.base_model
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.groups = self.heads // self.kv_heads
        self.embedding = base.embed_tokens.weight
        self.norm = (base.norm.weight, base.norm.variance_epsilon)
        self.head = _weights(model.get_output_embeddings())
        self.frequencies = base.rotary_emb.inv_freq
        self.fingerprint = _fingerprint(self.frequencies)
        self.rotary = _rotary_table(model, self.embedding.dtype)
        self.blocks = []
        for layer in base.layers:
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

    def fresh(self) -> bool:
        """Whether the rotary table still matches the model's frequencies (the weights are the
        model's own tensors, always current)."""
        return _fingerprint(self.frequencies) == self.fingerprint

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The input states of token ids; (..., H)."""
        return functional.embedding(ids, self.embedding)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final norm and the head; (..., V)."""
        return functional.linear(_rms_norm(hidden, *self.norm), *self.head)

    def __call__(
        self,
        hidden: torch.Tensor,  # (B, q, H)
        allowed: torch.Tensor,  # (B, 1, q, K) bool
        position_ids: torch.Tensor,  # (B, q)
        cache: DynamicCache,
    ) -> torch.Tensor:
        """`hidden` through every block against `cache` (extended by the q new columns); not
        normed, (B, q, H)."""
        rows, width = hidden.shape[:2]
        heads = (rows, width, -1, self.head_dim)
        # An out-of-range position fails here rather than reading past the table.
        table = functional.embedding(position_ids, self.rotary)[:, None]  # (B, 1, q, 2D)
        cos, sin = (part.contiguous() for part in table.split(self.head_dim, dim=-1))
        for block in self.blocks:
            normed = _rms_norm(hidden, block.norm_in, block.norm_in_eps)
            query = functional.linear(normed, *block.q).view(heads).transpose(1, 2)
            key = functional.linear(normed, *block.k).view(heads).transpose(1, 2)
            value = functional.linear(normed, *block.v).view(heads).transpose(1, 2)
            query, key = _rotated(query, cos, sin), _rotated(key, cos, sin)
            key, value = cache.update(key, value, block.layer_idx)
            attended = self._attend(query, key, value, allowed)
            hidden = hidden + functional.linear(attended.reshape(rows, width, -1), *block.o)
            normed = _rms_norm(hidden, block.norm_post, block.norm_post_eps)
            gate, up = functional.linear(normed, *block.gate), functional.linear(normed, *block.up)
            hidden = hidden + functional.linear(functional.silu(gate) * up, *block.down)
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


def _runs_as_tensors(model: PreTrainedModel) -> bool:
    config = model.config
    rope = getattr(model.base_model.rotary_emb, "rope_type", None)
    return (
        config._attn_implementation == "sdpa"
        and config.hidden_act == "silu"
        and rope in STATIC_ROPE_TYPES
        and type(model.base_model.embed_tokens) is torch.nn.Embedding
        and type(model.get_output_embeddings()) is torch.nn.Linear
        and plain_projections(model)
    )


def llama_blocks(model: PreTrainedModel) -> LlamaBlocks | None:
    """`model`'s decoder as tensor operations, built once per model (again once its rotary
    frequencies move or change); None where the modules must run (attention other than sdpa, an
    activation other than SiLU, a rotary embedding that changes with the length, wrapped
    projections: the decision-query adapter's while it is active)."""
    adapter = find_query_adapter(model)
    if adapter is not None and adapter.active:
        return None
    built = _BUILT.get(model)
    if (model not in _BUILT) or (built is not None and not built.fresh()):
        built = _BUILT[model] = LlamaBlocks(model) if _runs_as_tensors(model) else None
    return built


def use_llama_blocks(model: PreTrainedModel, on: bool) -> None:
    """Run `model`'s decoder as tensor operations (`on`, where `llama_blocks` can) or as modules:
    what `bench/decode_step.py` compares."""
    _BUILT.pop(model, None)
    if not on:
        _BUILT[model] = None
