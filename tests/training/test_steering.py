"""Steering is real: on the tiny model's first-step logits (held-out prompts, full vocabulary),
raising a category's bias or lowering its threshold never lowers its refusal rate, and a bias of
-inf / a huge bias switch it fully off / on."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.categories import CATEGORIES, MANIFEST_FILENAME, RefusalManifest
from workers.training.data import generate, split
from workers.training.evaluate import first_step_logits


@pytest.fixture(scope="module")
def heldout_logits(tiny_model_dir: Path) -> tuple[torch.Tensor, RefusalManifest]:
    """(N, V) first-step logits of the tiny model (plain from_pretrained) on held-out prompts."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    manifest = RefusalManifest.from_json(
        json.loads((tiny_model_dir / MANIFEST_FILENAME).read_text())
    )
    heldout = split(generate(0, examples_per_class=120))[1]
    return first_step_logits(model, tok, [e.messages for e in heldout]), manifest


def greedy_rate(
    logits: torch.Tensor, manifest: RefusalManifest, category: str, bias: float
) -> float:
    """Share of prompts whose biased full-vocabulary argmax is `category`'s token."""
    biased = logits.clone()
    token = manifest.category_ids[CATEGORIES.index(category)]
    biased[:, token] += bias
    return (biased.argmax(-1) == token).float().mean().item()


def threshold_rate(
    logits: torch.Tensor, manifest: RefusalManifest, category: str, taus: dict[str, float]
) -> float:
    """Share refused with `category` by the threshold rule: most probable category with p >= tau."""
    probs = torch.softmax(logits, dim=-1)[:, list(manifest.category_ids)]  # (N, C)
    tau = torch.tensor([taus[c] for c in CATEGORIES])  # (C,)
    eligible = torch.where(probs >= tau, probs, torch.full_like(probs, -1.0))  # (N, C)
    refuses = (eligible >= 0).any(-1)  # (N,)
    chosen = eligible.argmax(-1)  # (N,)
    return (refuses & (chosen == CATEGORIES.index(category))).float().mean().item()


BIASES = [-math.inf, -50.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 50.0, 1e9]


@pytest.mark.parametrize("category", CATEGORIES)
def test_raising_bias_never_lowers_the_refusal_rate(heldout_logits, category: str) -> None:
    logits, manifest = heldout_logits
    rates = [greedy_rate(logits, manifest, category, b) for b in BIASES]
    assert all(a <= b for a, b in itertools.pairwise(rates)), rates
    assert rates[0] == 0.0
    assert rates[-1] == 1.0
    assert 0.0 < rates[BIASES.index(0.0)] < 1.0


@pytest.mark.parametrize("category", CATEGORIES)
def test_lowering_threshold_never_lowers_the_refusal_rate(heldout_logits, category: str) -> None:
    logits, manifest = heldout_logits
    taus = [1.01, 0.99, 0.9, 0.7, 0.5, 0.3, 0.1, 0.01, 0.0]
    rates = []
    for tau in taus:
        rule = {c: 0.5 for c in CATEGORIES} | {category: tau}
        rates.append(threshold_rate(logits, manifest, category, rule))
    assert all(a <= b for a, b in itertools.pairwise(rates)), rates
    assert rates[0] == 0.0
    assert rates[-1] > rates[0]


def test_bias_steers_refusal_away_from_a_category_into_another(heldout_logits) -> None:
    logits, manifest = heldout_logits
    safety = manifest.category_ids[CATEGORIES.index("safety")]
    base = (logits.argmax(-1) == safety).sum().item()
    biased = logits.clone()
    biased[:, safety] = -math.inf
    assert base > 0
    assert (biased.argmax(-1) == safety).sum().item() == 0
