"""The direct prefill and decode step on the tiny model: the logits, caches and tokens of
transformers' forward, for Llama-shaped models only."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import cast

import pytest
import torch
from transformers import DynamicCache, PreTrainedModel

from workers.engine.batch import Engine
from workers.engine.continuous import Joining, RunningBatch
from workers.engine.forward import (
    decode_logits,
    decodes_directly,
    prefill_logits,
)
from workers.engine.prefill import left_pad
from workers.engine.types import GenerationRequest, GenerationResult, RowPolicy, SamplingParams

from .prompts import PROMPTS


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_direct_step_gives_the_forward_passs_logits_on_a_left_padded_cache(
    engine: Engine, attention: str
) -> None:
    model = copy.deepcopy(engine.loaded.model)
    model.set_attn_implementation(attention)
    rows = [engine.loaded.encode(p) for p in PROMPTS[:5]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])  # (B, T) left-padded
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        twin = copy.deepcopy(cache)
        tokens = torch.tensor([11, 12, 13, 14, 15])
        grown = torch.cat([mask, mask.new_ones((len(rows), 1))], -1)
        nxt = pos[:, -1] + 1
        plain = model(
            input_ids=tokens[:, None],
            attention_mask=grown,
            position_ids=nxt[:, None],
            cache=cache,
            use_cache=True,
        ).logits[:, -1]
        direct = decode_logits(model, tokens, grown, nxt, twin, direct=True)
    assert decodes_directly(model)
    assert torch.allclose(direct, plain, atol=1e-5)
    assert twin.get_seq_length() == cache.get_seq_length() == width + 1


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_direct_prefill_gives_the_forward_passs_logits_and_cache(
    engine: Engine, attention: str
) -> None:
    """Rows of different lengths, left-padded: the kept positions' logits, every real column of
    the cache, and the next step's logits from either cache agree."""
    model = copy.deepcopy(engine.loaded.model)
    model.set_attn_implementation(attention)
    batch = left_pad([engine.loaded.encode(p) for p in PROMPTS[:6]], 0, torch.device("cpu"))
    assert len(set(batch.lengths)) > 1
    with torch.inference_mode():
        caches = [DynamicCache(config=model.config) for _ in range(2)]
        plain, direct = (
            prefill_logits(model, batch, cache, 3, direct=way)
            for cache, way in zip(caches, (False, True), strict=True)
        )
        real = batch.attention_mask.bool()
        for a, b in zip(caches[0].layers, caches[1].layers, strict=True):
            for x, y in ((a.keys, b.keys), (a.values, b.values)):
                assert torch.allclose(x.transpose(1, 2)[real], y.transpose(1, 2)[real], atol=1e-5)
                assert torch.isfinite(y).all()  # padding never reaches a row as NaN
        grown = torch.cat([batch.attention_mask, real.new_ones((len(real), 1)).long()], -1)
        tokens, nxt = torch.arange(11, 17), batch.position_ids[:, -1] + 1
        after = [decode_logits(model, tokens, grown, nxt, c, direct=True) for c in caches]
    assert plain.shape == direct.shape == (6, 3, model.config.vocab_size)
    assert torch.allclose(direct, plain, atol=1e-5)
    assert torch.allclose(after[0], after[1], atol=1e-5)


def _results(batch: RunningBatch, engine: Engine) -> dict[int, GenerationResult]:
    requests = [
        GenerationRequest(PROMPTS[3], RowPolicy(), SamplingParams(0.0, 1.0, 20)),
        GenerationRequest(PROMPTS[9], RowPolicy(), SamplingParams(0.8, 0.9, 24, seed=7)),
        GenerationRequest(PROMPTS[5] * 3, RowPolicy(), SamplingParams(1.0, 1.0, 30, seed=1)),
        GenerationRequest("Hi", RowPolicy(), SamplingParams(0.0, 1.0, 6)),
    ]
    results: dict[int, GenerationResult] = {}
    for key, request in enumerate(requests):  # one joins after each step, as in the loop
        for event in batch.admit([Joining(key, request, engine.loaded.encode(request.prompt))]):
            if event.result is not None:
                results[event.key] = event.result
        for event in batch.step():
            if event.result is not None:
                results[event.key] = event.result
    while len(batch):
        for event in batch.step():
            if event.result is not None:
                results[event.key] = event.result
    return results


def test_the_running_batch_makes_the_same_tokens_either_way(engine: Engine) -> None:
    direct = RunningBatch(engine.loaded)
    plain = RunningBatch(engine.loaded)
    plain._direct = False
    assert direct._direct
    a, b = _results(direct, engine), _results(plain, engine)
    assert {k: r.token_ids for k, r in a.items()} == {k: r.token_ids for k, r in b.items()}
    assert len(a) == 4 and all(len(r.token_ids) > 1 for r in a.values())


def test_other_architectures_keep_the_transformers_forward() -> None:
    def fake(model_type: str, **extra: object) -> PreTrainedModel:
        config = SimpleNamespace(model_type=model_type, _attn_implementation="sdpa", **extra)
        return cast(PreTrainedModel, SimpleNamespace(config=config))

    assert decodes_directly(fake("llama"))
    assert not decodes_directly(fake("gemma"))  # scales its embeddings
    assert not decodes_directly(fake("mistral", sliding_window=4096))
