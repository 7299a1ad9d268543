"""A manifest with `respond_in_context: false` (a refusal head on an unchanged base model):
`[respond]` is still the answer's first token, but the answer is decoded from the prompt alone,
so it is what the model says to the prompt without `[respond]`; refusals keep their token in
context; greedy and seeded rows stay the same alone and in any mix."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from core.categories import CATEGORIES, InvalidManifest, RefusalManifest
from workers.engine.batch import Engine
from workers.engine.model import LoadedModel
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

from .prompts import PROMPTS, greedy_from_prompt

C = len(CATEGORIES)
ANSWER = RowPolicy("bias", (-1e4,) * C)  # never refuse: the first token is [respond]
SAFETY = RowPolicy("bias", (0, 0, 0, 0, 1e4))


@pytest.fixture(scope="module")
def head_engine(lm: LoadedModel) -> Engine:
    manifest = dataclasses.replace(lm.manifest, respond_in_context=False)
    return Engine(dataclasses.replace(lm, manifest=manifest), max_batch_size=64)


def test_a_responding_row_answers_from_the_prompt_alone(lm: LoadedModel, head_engine: Engine):
    budget = SamplingParams(temperature=0.0, max_new_tokens=12, ignore_eos=True)
    requests = [GenerationRequest(p, ANSWER, budget) for p in PROMPTS[:4]]
    (results, _) = head_engine.generate(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.token_ids[0] == lm.manifest.respond_id and result.decision == -1
        assert list(result.token_ids[1:]) == greedy_from_prompt(lm, request.prompt, 11)
        assert result.completion_tokens == 12


def test_in_context_the_same_rows_answer_differently(lm: LoadedModel, head_engine: Engine):
    """The mode changes something: with `[respond]` in context the tiny model answers otherwise."""
    budget = SamplingParams(temperature=0.0, max_new_tokens=12, ignore_eos=True)
    requests = [GenerationRequest(p, ANSWER, budget) for p in PROMPTS[:4]]
    (outside, _) = head_engine.generate(requests)
    (inside, _) = Engine(lm).generate(requests)
    assert [r.token_ids for r in outside] != [r.token_ids for r in inside]


def test_refusals_and_mixes_are_unchanged(lm: LoadedModel, head_engine: Engine) -> None:
    seeded = SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=10, seed=11)
    refused = GenerationRequest(PROMPTS[2], SAFETY, SamplingParams(max_new_tokens=8))
    answered = GenerationRequest(PROMPTS[3], ANSWER, seeded)
    (alone_refused,), _ = head_engine.generate([refused])
    (alone_answered,), _ = head_engine.generate([answered])
    mixed, _ = head_engine.generate([refused, answered, GenerationRequest("Hi", ANSWER, seeded)])
    assert mixed[0].token_ids == alone_refused.token_ids
    assert mixed[1].token_ids == alone_answered.token_ids
    (in_context,), _ = Engine(lm).generate([refused])
    assert alone_refused.token_ids == in_context.token_ids  # a refusal keeps its token in context


def test_the_manifest_flag_round_trips_and_is_checked(tmp_path: Path, lm: LoadedModel) -> None:
    data = dataclasses.replace(lm.manifest, respond_in_context=False).to_json()
    assert data["respond_in_context"] is False
    assert RefusalManifest.from_json(json.loads(json.dumps(data))).respond_in_context is False
    assert "respond_in_context" not in lm.manifest.to_json()  # the default stays implicit
    with pytest.raises(InvalidManifest, match="respond_in_context"):
        RefusalManifest.from_json({**data, "respond_in_context": "no"})
