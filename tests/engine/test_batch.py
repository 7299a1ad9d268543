"""Mixed-policy batched decoding on the tiny model: per-row rules, per-row sampling, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from core.categories import CATEGORIES
from core.decision import greedy_bias_decision, sampled_bias_probabilities, threshold_decision
from workers.engine.batch import Engine
from workers.engine.processor import RefusalPolicyProcessor
from workers.engine.types import (
    GenerationRequest,
    RowPolicy,
    SamplingParams,
    stack_summaries,
)

from .prompts import PROMPTS

C = len(CATEGORIES)
OFF = (-math.inf,) * C
NO_THRESHOLD = (math.inf,) * C


def _greedy(prompt: str, policy: RowPolicy | None = None, n: int = 12) -> GenerationRequest:
    return GenerationRequest(prompt, policy or RowPolicy(), SamplingParams(max_new_tokens=n))


def _noise_rows() -> list[GenerationRequest]:
    """Neighbours with every other kind of policy, sampling and length."""
    return [
        GenerationRequest(PROMPTS[5], RowPolicy("threshold", threshold=(0.0,) * C)),
        GenerationRequest(PROMPTS[6], RowPolicy("bias", OFF), SamplingParams(0.9, 0.8, 20, seed=1)),
        GenerationRequest(
            PROMPTS[7] * 3, RowPolicy("bias", (0, 0, 0, 0, 1e4)), SamplingParams(max_new_tokens=3)
        ),
        GenerationRequest(
            PROMPTS[8],
            RowPolicy("threshold", threshold=NO_THRESHOLD),
            SamplingParams(1.3, 1.0, 7, seed=2),
        ),
        GenerationRequest(
            "Hi", RowPolicy("bias", (2.0, -1.0, 0.5, -math.inf, 3.0)), SamplingParams(0.5, 0.3, 16)
        ),
    ]


def test_greedy_row_gives_the_same_tokens_alone_and_in_a_mixed_batch(engine: Engine) -> None:
    for prompt in PROMPTS[:4]:
        target = _greedy(prompt, RowPolicy("bias", (0.5, 0.0, -1.0, 0.0, 1.0)))
        alone, _ = engine.generate([target])
        mixed, _ = engine.generate([*_noise_rows()[:3], target, *_noise_rows()[3:]])
        assert mixed[3].token_ids == alone[0].token_ids
        np.testing.assert_allclose(mixed[3].summary.s, alone[0].summary.s, atol=1e-4)


def test_seeded_row_gives_the_same_tokens_alone_and_in_a_batch(engine: Engine) -> None:
    for seed, (t, p) in enumerate([(0.8, 1.0), (1.2, 0.9), (0.6, 0.5)]):
        row = GenerationRequest(PROMPTS[seed], RowPolicy(), SamplingParams(t, p, 16, seed=seed))
        alone, _ = engine.generate([row])
        again, _ = engine.generate([row])
        mixed, _ = engine.generate([*_noise_rows(), row])
        assert alone[0].token_ids == again[0].token_ids == mixed[-1].token_ids
        assert mixed[-1].seed == seed


def test_custom_loop_matches_transformers_generate(engine: Engine) -> None:
    """Greedy decoding in our loop equals `model.generate` with the same processor."""
    lm = engine.loaded
    prompts = list(PROMPTS[:6])
    bias = [(1.0, 0.0, -2.0, 0.0, 0.5)] * len(prompts)
    reqs = [_greedy(p, RowPolicy("bias", b), n=10) for p, b in zip(prompts, bias, strict=True)]
    ours, _ = engine.generate_batch(reqs)
    enc = lm.tokenizer.pad(
        {"input_ids": [lm.encode(p) for p in prompts]}, padding=True, return_tensors="pt"
    ).to(lm.device)
    proc = RefusalPolicyProcessor.from_rows(
        refusal_ids=lm.refusal_ids,
        control_ids=lm.control_ids,
        policies=[RowPolicy("bias", b, NO_THRESHOLD) for b in bias],
        temperatures=[0.0] * len(prompts),
    )
    out = lm.model.generate(
        **enc,
        logits_processor=LogitsProcessorList([proc]),
        do_sample=False,
        max_new_tokens=10,
        pad_token_id=lm.pad_id,
    )
    width = enc["input_ids"].shape[1]
    for i, row in enumerate(ours):
        n = len(row.token_ids)
        assert out[i, width : width + n].tolist() == list(row.token_ids)


def test_threshold_and_greedy_bias_decisions_equal_core_predictions(engine: Engine) -> None:
    rng = np.random.default_rng(0)
    prompts = list(PROMPTS) * 2
    n = len(prompts)
    thr = 10 ** rng.uniform(-4, 0, size=(n, C))
    thr[rng.random((n, C)) < 0.1] = math.inf
    base, _ = engine.generate([_greedy(p, n=1) for p in prompts])
    summ = stack_summaries([r.summary for r in base])
    # Biases that put the biased refusal logit near the best other logit: both outcomes occur.
    bias = (summ.m[:, None] - summ.s) + rng.uniform(-3, 3, size=(n, C))
    bias[rng.random((n, C)) < 0.1] = -math.inf

    reqs = [
        *(
            _greedy(p, RowPolicy("threshold", threshold=tuple(t)), n=2)
            for p, t in zip(prompts, thr, strict=True)
        ),
        *(_greedy(p, RowPolicy("bias", tuple(b)), n=2) for p, b in zip(prompts, bias, strict=True)),
    ]
    res, _ = engine.generate(reqs)
    emitted = np.array([r.decision for r in res])
    got = stack_summaries([r.summary for r in res])
    np.testing.assert_array_equal(emitted[:n], threshold_decision(got.take(np.arange(n)), thr))
    np.testing.assert_array_equal(
        emitted[n:], greedy_bias_decision(got.take(np.arange(n, 2 * n)), bias)
    )
    for part in (emitted[:n], emitted[n:]):
        assert 0 < (part >= 0).sum() < n, "both refusals and answers should occur"


def test_sampled_bias_rows_reproduce_core_refusal_probabilities(engine: Engine) -> None:
    """400 seeds per setting; every first-token class within 4 binomial sigmas of core."""
    cases = [(PROMPTS[1], 1.0), (PROMPTS[5], 0.7)]
    for prompt, temp in cases:
        probe, _ = engine.generate(
            [GenerationRequest(prompt, sampling=SamplingParams(temp, 1.0, 1, seed=0))]
        )
        summ = stack_summaries([probe[0].summary])
        # Biases aiming at refusal shares (0.1, 0.15, 0.05, 0.2, 0.1) against respond 0.4.
        target = np.array([0.1, 0.15, 0.05, 0.2, 0.1])
        bias = temp * (summ.lt[0] + np.log(target / 0.4)) - summ.s[0]
        seeds = range(400)
        reqs = [
            GenerationRequest(
                prompt, RowPolicy("bias", tuple(bias)), SamplingParams(temp, 1.0, 1, seed=s)
            )
            for s in seeds
        ]
        res, _ = engine.generate(reqs)
        rows = stack_summaries([r.summary for r in res])
        expected = sampled_bias_probabilities(rows, bias).mean(axis=0)  # (C + 1,)
        counts = np.bincount([r.decision if r.decision >= 0 else C for r in res], minlength=C + 1)
        sigma = np.sqrt(400 * expected * (1 - expected))
        assert (np.abs(counts - 400 * expected) <= 4 * sigma + 1e-9).all(), (counts, 400 * expected)


def test_results_carry_text_without_control_token_and_honour_budgets(engine: Engine) -> None:
    reqs = [
        _greedy(PROMPTS[0], RowPolicy("bias", (0, 0, 0, 0, 1e4)), n=9),
        _greedy(PROMPTS[1], RowPolicy("bias", OFF), n=4),
        GenerationRequest(
            PROMPTS[2], RowPolicy(), SamplingParams(1.0, 0.9, 30, seed=3, ignore_eos=True)
        ),
    ]
    res, stats = engine.generate(reqs)
    lm = engine.loaded
    control = set(lm.manifest.all_ids)
    assert res[0].decision == CATEGORIES.index("safety") and res[0].category == "safety"
    assert res[0].refused and res[0].first_token_id == lm.manifest.category_ids[-1]
    assert res[1].decision == -1 and not res[1].refused
    assert len(res[2].token_ids) == 30 and res[2].finish_reason == "length"
    for r, req in zip(res, reqs, strict=True):
        assert 1 <= r.completion_tokens == len(r.token_ids) <= req.sampling.max_new_tokens
        assert not control & set(r.token_ids[1:]), "control tokens only ever come first"
        assert "[" + CATEGORIES[-1] + "]" not in r.text and "[respond]" not in r.text
        assert r.prompt_tokens == len(lm.encode(req.prompt))
        assert 0 < r.first_token_ms <= r.total_ms
        assert sum(r.summary.probabilities) < 1.0
    assert stats.generated_tokens == sum(len(r.token_ids) for r in res)


def test_request_validation() -> None:
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1.0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError):
        RowPolicy("bias", bias=(math.inf,) * C)
    with pytest.raises(ValueError):
        RowPolicy("sometimes")  # type: ignore[arg-type]
    assert torch.isfinite(torch.tensor(RowPolicy().bias)).all()


def test_row_policy_compiles_from_core_policy_rules() -> None:
    from core.policy import parse_rules

    rules = parse_rules(
        {
            "mode": "threshold",
            "categories": {"safety": {"threshold": 0.3}, "humanizing": {"enabled": False}},
        }
    )
    policy = RowPolicy.from_rules(rules)
    assert policy.mode == "threshold"
    assert policy.threshold[CATEGORIES.index("safety")] == 0.3
    assert policy.threshold[CATEGORIES.index("humanizing")] == math.inf
    assert policy.bias[CATEGORIES.index("humanizing")] == -math.inf


def test_too_long_request_is_refused_before_any_work(engine: Engine) -> None:
    from workers.engine.batch import RequestTooLong

    limit = engine.loaded.max_positions
    assert limit is not None
    long = GenerationRequest(PROMPTS[0], sampling=SamplingParams(max_new_tokens=limit))
    with pytest.raises(RequestTooLong, match="exceeds the model's context"):
        engine.check(long)
    with pytest.raises(RequestTooLong):
        engine.generate([_greedy(PROMPTS[1]), long])
    results, stats = engine.generate([])
    assert results == [] and stats.rows == 0
