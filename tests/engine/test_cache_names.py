"""The KV cache goes by the name the installed transformers expects: no deprecated keyword (it
warns in transformers 5 and goes in 5.40), and the old name for a forward that knows only it."""

from __future__ import annotations

import warnings

import torch

from workers.engine.batch import Engine
from workers.engine.cache_names import cache_kwargs, output_cache
from workers.engine.continuous import Joining, RunningBatch
from workers.engine.types import GenerationRequest

from .prompts import PROMPTS


class _OldForward(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, past_key_values: object = None) -> None: ...


class _NewForward(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, cache: object = None) -> None: ...


def test_keyword_follows_the_forward_signature() -> None:
    marker = object()
    assert cache_kwargs(_OldForward(), marker) == {"past_key_values": marker}
    assert cache_kwargs(_NewForward(), marker) == {"cache": marker}


def test_decoding_passes_no_deprecated_cache_keyword(engine: Engine) -> None:
    batch = RunningBatch(engine.loaded)
    request = GenerationRequest(PROMPTS[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        batch.admit([Joining(0, request, engine.loaded.encode(request.prompt))])
        while len(batch):
            batch.step()


def test_output_cache_reads_either_field(engine: Engine) -> None:
    ids = torch.tensor([engine.loaded.encode(PROMPTS[0])])
    output = engine.loaded.model.base_model(input_ids=ids, use_cache=True)
    found = output_cache(output)
    assert found is not None and found.get_seq_length() == ids.shape[1]
