"""The per-row policy processor on synthetic logits, checked against the rules in `core`."""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import LogitsProcessorList

from core.decision import greedy_bias_decision, threshold_decision
from core.decision import refusal_probabilities as core_probabilities
from core.summary import summarise_logits
from workers.engine.model import LoadedModel
from workers.engine.processor import RefusalPolicyProcessor, first_token_summary
from workers.engine.scoring import score_batch

V, C = 64, 5
REFUSAL = torch.arange(V - 6, V - 1)  # control tokens last, as in the served models
CONTROL = torch.arange(V - 6, V)


def _processor(modes: list[str], bias: np.ndarray, thr: np.ndarray, temps: np.ndarray):
    return RefusalPolicyProcessor.from_rows(
        refusal_ids=REFUSAL,
        control_ids=CONTROL,
        modes=modes,
        biases=[tuple(r) for r in bias],
        thresholds=[tuple(r) for r in thr],
        temperatures=temps.tolist(),
    )


def _logits(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, V, generator=g) * 2.0  # (N, V)
    z[:, REFUSAL] += torch.randn(n, C, generator=g) * 3.0
    return z


def _decision(tokens: torch.Tensor) -> np.ndarray:
    """-1 for a non-refusal token, else the category index."""
    t = tokens.numpy()
    return np.where((t >= V - 6) & (t < V - 1), t - (V - 6), -1)


def test_summary_matches_core_reference() -> None:
    z = _logits(200, 0)
    temps = torch.rand(200, generator=torch.Generator().manual_seed(1)) * 2 + 0.1
    got = first_token_summary(z, REFUSAL, temps)
    ref = summarise_logits(z.double().numpy(), REFUSAL.tolist(), temps.double().numpy())
    np.testing.assert_allclose(got.s.numpy(), ref.s, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.m.numpy(), ref.m, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.l1.numpy(), ref.l1, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got.lt.numpy(), ref.lt, rtol=0, atol=1e-4)


def test_threshold_rows_emit_what_core_predicts() -> None:
    n = 2000
    z = _logits(n, 2)
    rng = np.random.default_rng(3)
    thr = 10 ** rng.uniform(-3, 0, size=(n, C))
    thr[rng.random((n, C)) < 0.1] = math.inf  # switched-off categories
    proc = _processor(["threshold"] * n, np.zeros((n, C)), thr, np.zeros(n))
    out = proc(None, z)
    emitted = _decision(out.argmax(dim=-1))
    summ = summarise_logits(z.double().numpy(), REFUSAL.tolist())
    np.testing.assert_array_equal(emitted, threshold_decision(summ, thr))
    np.testing.assert_allclose(proc.probabilities.numpy(), core_probabilities(summ), atol=1e-6)
    forced = proc.forced.numpy()
    assert 0.2 < forced.mean() < 0.8  # both outcomes exercised
    # A forced row has exactly one finite logit; a responding row has no finite refusal logit.
    assert (torch.isfinite(out[forced]).sum(dim=-1) == 1).all()
    assert torch.isinf(out[~forced][:, REFUSAL]).all()


def test_greedy_bias_rows_emit_what_core_predicts() -> None:
    n = 2000
    z = _logits(n, 4)
    rng = np.random.default_rng(5)
    bias = rng.uniform(-8, 8, size=(n, C))
    bias[rng.random((n, C)) < 0.1] = -math.inf
    bias[rng.random(n) < 0.05, 0] = 1e4  # a huge bias always wins
    proc = _processor(["bias"] * n, bias, np.full((n, C), math.inf), np.zeros(n))
    out = proc(None, z)
    emitted = _decision(out.argmax(dim=-1))
    summ = summarise_logits(z.double().numpy(), REFUSAL.tolist())
    np.testing.assert_array_equal(emitted, greedy_bias_decision(summ, bias))
    assert 0.2 < (emitted >= 0).mean() < 0.9


def test_mixed_rows_follow_their_own_mode_and_later_steps_mask_control_tokens() -> None:
    z = _logits(4, 6)
    bias = np.array([[0.0] * C, [-math.inf] * C, [0.0] * C, [0.0, 0.0, 0.0, 0.0, 1e4]])
    thr = np.array([[math.inf] * C, [math.inf] * C, [0.0] * C, [math.inf] * C])
    proc = _processor(["bias", "bias", "threshold", "bias"], bias, thr, np.array([0, 1, 0, 0.5]))
    first = proc(None, z)
    assert torch.isinf(first[1, REFUSAL]).all()  # all categories off
    assert int(first[2].argmax()) in REFUSAL.tolist()  # tau = 0: always refuses
    assert int(first[3].argmax()) == int(REFUSAL[4])  # huge safety bias
    torch.testing.assert_close(first[0], z[0])  # zero bias leaves logits alone
    later = proc(None, z)
    assert torch.isinf(later[:, CONTROL]).all()
    keep = torch.ones(V, dtype=torch.bool)
    keep[CONTROL] = False
    torch.testing.assert_close(later[:, keep], z[:, keep])


def test_processor_sees_raw_logits_before_transformers_warpers(lm: LoadedModel) -> None:
    """Inside `model.generate` the processor runs before temperature and top-p warpers."""
    prompts = ["Where is the nearest library?", "Tell me about yourself."]
    texts = [
        lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]
    enc = lm.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    proc = RefusalPolicyProcessor.from_rows(
        refusal_ids=lm.refusal_ids,
        control_ids=lm.control_ids,
        modes=["bias", "bias"],
        biases=[(0.0,) * C] * 2,
        thresholds=[(math.inf,) * C] * 2,
        temperatures=[0.3, 0.3],
    )
    torch.manual_seed(0)
    lm.model.generate(
        **enc.to(lm.device),
        logits_processor=LogitsProcessorList([proc]),
        do_sample=True,
        temperature=0.3,
        top_p=0.5,
        max_new_tokens=2,
    )
    raw = score_batch(lm, [lm.encode(p) for p in prompts], [0.3, 0.3])
    assert proc.summary is not None
    for i, row in enumerate(raw):
        np.testing.assert_allclose(proc.summary.s[i].cpu().numpy(), row.s, atol=1e-4)
        np.testing.assert_allclose(float(proc.summary.l1[i]), row.l1, atol=1e-4)


def test_a_category_without_a_token_is_never_emitted_and_has_probability_zero() -> None:
    # Only safety (index 4) has a token; the other four point one past the vocabulary.
    refusal = torch.tensor([V, V, V, V, V - 2])
    control = torch.tensor([V - 2, V - 1])
    n = 50
    z = _logits(n, 3)  # (N, V)
    proc = RefusalPolicyProcessor.from_rows(
        refusal_ids=refusal,
        control_ids=control,
        modes=["threshold"] * n,
        biases=[(0.0,) * C] * n,
        thresholds=[(0.0,) * C] * n,  # tau = 0 everywhere: "refuse with anything eligible"
        temperatures=[0.0] * n,
    )
    out = proc(None, z)
    assert out.shape == (n, V)
    assert (out.argmax(-1) == V - 2).all()  # always the one real refusal token
    assert proc.probabilities is not None and proc.summary is not None
    assert (proc.probabilities[:, :4] == 0).all() and (proc.probabilities[:, 4] > 0).all()
    assert torch.isneginf(proc.summary.s[:, :4]).all()
    # The other tokens' summary is unchanged by the virtual column.
    full = first_token_summary(z, torch.tensor([V - 6, V - 5, V - 4, V - 3, V - 2]), torch.ones(n))
    assert not torch.allclose(proc.summary.l1, full.l1)  # 4 fewer tokens excluded from L_1
    rest = z.clone()
    rest[:, V - 2] = -math.inf
    torch.testing.assert_close(proc.summary.l1, rest.logsumexp(-1))
