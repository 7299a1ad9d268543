"""Prefill-only scoring: the summaries decoding would record, from one pass, streamed."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from workers.engine.batch import Engine
from workers.engine.scoring import ScoreItem, _batches, score_prompts
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

from .prompts import PROMPTS


def test_prefill_summaries_equal_those_recorded_at_the_first_decoding_step(engine: Engine) -> None:
    temps = [0.7 if i % 2 else 1.0 for i in range(len(PROMPTS))]
    reqs = [
        GenerationRequest(
            p, RowPolicy("bias", (1.0, -1.0, 0.0, 2.0, 0.5)), SamplingParams(t, 0.9, 3, seed=i)
        )
        for i, (p, t) in enumerate(zip(PROMPTS, temps, strict=True))
    ]
    generated, _ = engine.generate(reqs)
    items = [ScoreItem(p, t) for p, t in zip(PROMPTS, temps, strict=True)]
    scored = list(score_prompts(engine.loaded, items, batch_size=5, window=11))
    assert [s.index for s in scored] == list(range(len(PROMPTS)))
    for g, s in zip(generated, scored, strict=True):
        a, b = g.summary, s.summary
        np.testing.assert_allclose(a.s, b.s, atol=1e-4)
        np.testing.assert_allclose([a.m, a.l1, a.lt], [b.m, b.l1, b.lt], atol=1e-4)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert a.temperature == b.temperature
        assert s.prompt_tokens == g.prompt_tokens


def test_scoring_streams_in_windows_and_keeps_input_order(engine: Engine) -> None:
    pulled = 0

    def source() -> Iterator[ScoreItem]:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            yield ScoreItem(PROMPTS[i % len(PROMPTS)] + " " * (i % 3), key=f"k{i}")

    stream = score_prompts(engine.loaded, source(), batch_size=4, window=16)
    first = next(stream)
    assert first.key == "k0" and first.index == 0
    assert pulled == 16, "only one window is read ahead"
    rest = list(stream)
    assert [r.key for r in rest] == [f"k{i}" for i in range(1, 50)]


def test_length_batches_respect_row_and_token_budgets() -> None:
    lengths = [5, 40, 7, 6, 41, 39, 100, 8]
    groups = list(_batches(lengths, batch_size=3, max_batch_tokens=120))
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) <= 3
        assert len(g) == 1 or max(lengths[i] for i in g) * len(g) <= 120
    assert groups[0] == [0, 3, 2]  # shortest together


def test_summaries_round_trip_through_core_rows(engine: Engine) -> None:
    from core.summary import Summaries
    from workers.engine.types import stack_summaries

    scored = [s.summary for s in score_prompts(engine.loaded, PROMPTS[:5])]
    stacked = stack_summaries(scored)
    again = Summaries.from_rows([s.as_row() for s in scored])
    np.testing.assert_array_equal(again.s, stacked.s)
    np.testing.assert_array_equal(again.lt, stacked.lt)
    assert stacked.to_rows() == [s.as_row() for s in scored]
