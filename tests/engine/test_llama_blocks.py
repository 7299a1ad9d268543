"""The decoder blocks as tensor operations (`workers/engine/llama_blocks.py`) against the same
blocks run as modules: grouped key heads and projection biases included, which the tiny model
lacks (the demo model groups its heads; Qwen2 has biases)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import (
    DynamicCache,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from workers.engine.forward import decode_logits, decodes_directly, prefill_logits, run_layers
from workers.engine.llama_blocks import llama_blocks
from workers.engine.prefill import left_pad

SIZES = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # two query heads per key head
)


def _model(kind: str) -> PreTrainedModel:
    torch.manual_seed(0)
    model: PreTrainedModel
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**SIZES, attn_implementation="sdpa"))
    else:  # Qwen2: biases on the query, key and value projections
        model = Qwen2ForCausalLM(Qwen2Config(**SIZES, attn_implementation="sdpa"))
    return model.eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_blocks_give_the_modules_logits_and_cache_in_prefill_and_decode(kind: str) -> None:
    model = _model(kind)
    blocks = llama_blocks(model)
    assert decodes_directly(model) and blocks is not None and blocks.groups == 2
    rows = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    batch = left_pad(rows, 0, torch.device("cpu"))
    base = model.base_model
    with torch.inference_mode():
        caches = [DynamicCache(config=model.config) for _ in range(2)]
        ids, mask, pos = batch.input_ids, batch.attention_mask, batch.position_ids
        width = ids.shape[1]
        allowed = torch.ones((width, width), dtype=torch.bool).tril() & mask.bool()[:, None, :]
        allowed |= torch.eye(width, dtype=torch.bool)
        hidden = base.embed_tokens(ids)
        plain = run_layers(model, hidden, allowed[:, None], pos, caches[0])
        tensors = blocks(hidden, allowed[:, None], pos, caches[1])
        assert torch.equal(plain, tensors)  # the same operations' values, to the bit
        for a, b in zip(caches[0].layers, caches[1].layers, strict=True):
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
        # One decode step from each cache: through the modules (the forward) and the blocks.
        grown = torch.cat([mask, mask.new_ones((3, 1))], -1)
        tokens, nxt = torch.tensor([20, 21, 22]), pos[:, -1] + 1
        forward = model(
            input_ids=tokens[:, None],
            attention_mask=grown,
            position_ids=nxt[:, None],
            cache=caches[0],
            use_cache=True,
        ).logits[:, -1]
        direct = decode_logits(model, tokens, grown, nxt, caches[1], direct=True)
    assert torch.allclose(forward, direct, atol=1e-5)


def test_a_direct_prefill_with_grouped_heads_gives_the_forward_passs_logits() -> None:
    model = _model("llama")
    batch = left_pad([[5, 6, 7, 8], [9, 10]], 0, torch.device("cpu"))
    with torch.inference_mode():
        plain, direct = (
            prefill_logits(model, batch, DynamicCache(config=model.config), 2, direct=way)
            for way in (False, True)
        )
    assert torch.allclose(plain, direct, atol=1e-5)


def test_eager_attention_runs_the_modules() -> None:
    model = copy.deepcopy(_model("llama"))
    model.set_attn_implementation("eager")
    assert llama_blocks(model) is None


def test_the_blocks_follow_the_weights_and_the_rotary_frequencies_when_they_change() -> None:
    """A training step or a loaded state must not leave the engine decoding with old weights or
    an old rotary table."""
    model = _model("llama")
    batch = left_pad([[5, 6, 7, 8], [9, 10]], 0, torch.device("cpu"))

    def logits(direct: bool) -> torch.Tensor:
        with torch.inference_mode():
            cache = DynamicCache(config=model.config)
            return prefill_logits(model, batch, cache, 2, direct=direct)

    first = logits(True)
    with torch.no_grad():  # as an optimizer or a loaded state writes: in place
        model.model.layers[1].self_attn.k_proj.weight.mul_(1.5)
        model.model.layers[0].mlp.up_proj.weight.add_(0.01)
        model.model.rotary_emb.inv_freq.mul_(0.5)
    changed = logits(True)
    assert not torch.allclose(first, changed, atol=1e-3)
    assert torch.allclose(changed, logits(False), atol=1e-5)
