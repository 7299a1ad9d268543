"""A manifest's decision suffix: tokens appended to every prompt for the first step only.

The first-step logits (the decision, its probabilities and summary) are read after the suffix,
in decoding and in prefill-only scoring alike; the answer never sees it: a responding row answers
from the prompt alone (`respond_in_context: false`) and a refusal continues from the prompt and
its refusal token, exactly as without a suffix."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from core.categories import CATEGORIES, InvalidManifest, RefusalManifest
from workers.engine.batch import Engine
from workers.engine.model import LoadedModel
from workers.engine.scoring import score_prompts
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams
from workers.training.evaluate import first_step_logits, sample_answers

from .prompts import PROMPTS, greedy_from_prompt

C = len(CATEGORIES)
ANSWER = RowPolicy("bias", (-1e4,) * C)  # never refuse: the first token is [respond]
SAFETY = RowPolicy("bias", (0, 0, 0, 0, 1e4))
STEERED = RowPolicy("bias", (1.0, -1.0, 0.0, 2.0, 0.5))
NO_RULE = RowPolicy("bias", (0.0,) * C)  # the model's own decision
SUFFIX_IDS = (100, 101)  # two ordinary tokens of the tiny vocabulary stand in for learned ones


def forced_mix() -> list[GenerationRequest]:
    """Forced refusals and answers, greedy and seeded, of several prompt lengths."""
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10, ignore_eos=True)
    seeded = SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=10, seed=5)
    return [
        GenerationRequest(PROMPTS[0], SAFETY, greedy),
        GenerationRequest(PROMPTS[1] * 3, ANSWER, seeded),
        GenerationRequest(PROMPTS[2], ANSWER, greedy),
        GenerationRequest("Hi", SAFETY, seeded),
    ]


def _with_suffix(lm: LoadedModel, *, respond_in_context: bool) -> LoadedModel:
    manifest = dataclasses.replace(
        lm.manifest,
        respond_in_context=respond_in_context,
        decision_tokens=tuple(lm.tokenizer.convert_ids_to_tokens(list(SUFFIX_IDS))),
        decision_ids=SUFFIX_IDS,
    )
    return dataclasses.replace(lm, manifest=manifest)


@pytest.fixture(scope="module")
def suffixed(lm: LoadedModel) -> LoadedModel:
    return _with_suffix(lm, respond_in_context=False)


def test_the_decision_is_read_after_the_suffix(lm: LoadedModel, suffixed: LoadedModel) -> None:
    """Summaries are those of the control tokens' logits after prompt + suffix (the suffix's
    ordinary tokens are no candidates), in decoding and in scoring alike."""
    requests = [GenerationRequest(p, STEERED, SamplingParams(0.7, 0.9, 3, seed=1)) for p in PROMPTS]
    generated, _ = Engine(suffixed, max_batch_size=64).generate(requests)
    plain, _ = Engine(lm, max_batch_size=64).generate(requests)
    scored = [s.summary for s in score_prompts(suffixed, [*PROMPTS])]
    for prompt, g, s, p in zip(PROMPTS, generated, scored, plain, strict=True):
        with torch.inference_mode():
            ids = torch.tensor([[*lm.encode(prompt), *SUFFIX_IDS]])
            control = lm.model(input_ids=ids).logits[0, -1, lm.control_ids].double()  # (C + 1,)
        np.testing.assert_allclose(g.summary.s, control[:C], atol=1e-4)
        np.testing.assert_allclose(g.summary.l1, control[C], atol=1e-4)  # respond alone
        np.testing.assert_allclose(g.summary.probabilities, control.softmax(0)[:C], atol=1e-5)
        np.testing.assert_allclose(s.s, g.summary.s, atol=1e-4)
        np.testing.assert_allclose(s.probabilities, g.summary.probabilities, atol=1e-5)
        assert g.first_token_id in lm.manifest.all_ids
        assert g.prompt_tokens == p.prompt_tokens  # the suffix is not the caller's prompt
    assert any(
        not np.allclose(g.summary.s, p.summary.s, atol=1e-3)
        for g, p in zip(generated, plain, strict=True)
    )


def test_a_responding_row_answers_from_the_prompt_alone(suffixed: LoadedModel) -> None:
    budget = SamplingParams(temperature=0.0, max_new_tokens=12, ignore_eos=True)
    requests = [GenerationRequest(p, ANSWER, budget) for p in PROMPTS[:6]]
    results, _ = Engine(suffixed, max_batch_size=64).generate(requests)
    for request, result in zip(requests, results, strict=True):
        assert result.token_ids[0] == suffixed.manifest.respond_id and result.decision == -1
        assert list(result.token_ids[1:]) == greedy_from_prompt(suffixed, request.prompt, 11)
        assert not set(result.token_ids[1:]) & set(SUFFIX_IDS)  # never part of an answer


def test_answers_and_refusals_never_see_the_suffix(lm: LoadedModel) -> None:
    """Forced decisions give the very tokens of the same model without a suffix, alone and in a
    mix of prompt lengths (the suffix's cache columns are dropped before rows join)."""
    in_context = _with_suffix(lm, respond_in_context=True)
    requests = forced_mix()
    expected, _ = Engine(lm, max_batch_size=64).generate(requests)
    mixed, _ = Engine(in_context, max_batch_size=64).generate(requests)
    assert [r.token_ids for r in mixed] == [r.token_ids for r in expected]
    for request, want in zip(requests, expected, strict=True):
        (alone,), _ = Engine(in_context).generate([request])
        assert alone.token_ids == want.token_ids


def test_the_suffix_round_trips_and_is_checked(suffixed: LoadedModel) -> None:
    data = suffixed.manifest.to_json()
    assert [e["id"] for e in data["decision_suffix"]] == list(SUFFIX_IDS)
    parsed = RefusalManifest.from_json(json.loads(json.dumps(data)))
    assert parsed == suffixed.manifest
    respond = data["respond"]
    with pytest.raises(InvalidManifest, match="duplicate token ids"):
        RefusalManifest.from_json({**data, "decision_suffix": [respond]})
    with pytest.raises(InvalidManifest, match="decision_suffix"):
        RefusalManifest.from_json({**data, "decision_suffix": {"token": "x", "id": 1}})
    with pytest.raises(InvalidManifest, match=r"decision_suffix\[0\]"):
        RefusalManifest.from_json({**data, "decision_suffix": [{"token": "x"}]})
    with pytest.raises(InvalidManifest, match="outside the vocabulary"):
        RefusalManifest.from_json(data, vocab_size=SUFFIX_IDS[0])


def test_the_training_evaluation_decides_and_answers_as_the_engine(suffixed: LoadedModel) -> None:
    """`first_step_logits` and `sample_answers` (model cards, the probe) read the decision after
    the suffix and answer from the prompt alone, as served."""
    prompts = list(PROMPTS[:8])
    logits = first_step_logits(
        suffixed.model,
        suffixed.tokenizer,
        [({"role": "user", "content": p},) for p in prompts],
        manifest=suffixed.manifest,
    )
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    served, _ = Engine(suffixed).generate([GenerationRequest(p, NO_RULE, greedy) for p in prompts])
    assert logits.argmax(-1).tolist() == [r.first_token_id for r in served]
    answers = sample_answers(
        suffixed.model, suffixed.tokenizer, prompts, max_new_tokens=8, manifest=suffixed.manifest
    )
    for answer, result in zip(answers, served, strict=True):
        lead = suffixed.tokenizer.convert_ids_to_tokens(result.first_token_id)
        assert answer.startswith(lead)
        # the engine's budget counts the control token: its answer is one token shorter
        assert answer[len(lead) :].strip().startswith(result.text.strip())
