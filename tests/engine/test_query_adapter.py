"""A query adapter: a low-rank update that only the decision suffix passes through.

The decision is read after the suffix computed through the adapted layers, reading the prompt's
keys and values as the base model made them; nothing else ever passes through the update, so
answers and refusal continuations are exactly those of the model without it. The adapter is
saved beside a plain transformers model and checked when a worker loads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from core.categories import CATEGORIES, MANIFEST_FILENAME
from workers.engine.batch import Engine
from workers.engine.cache_names import cache_kwargs
from workers.engine.llama_blocks import llama_blocks
from workers.engine.model import LoadedModel, ModelLoadError, load_model
from workers.engine.query_adapter import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Gate,
    GatedLowRank,
    add_query_adapter,
    find_query_adapter,
    save_query_adapter,
)
from workers.engine.scoring import score_prompts
from workers.engine.types import GenerationRequest, SamplingParams
from workers.training.decision_query import add_query_tokens
from workers.training.evaluate import first_step_logits
from workers.training.tokenizer import resize_for_control_tokens

from .prompts import PROMPTS, greedy_from_prompt
from .test_decision_suffix import NO_RULE, forced_mix

C = len(CATEGORIES)


def _suffixed_copy(source: Path, out: Path) -> Path:
    """A copy of `source` with one learned query token as its decision suffix (untrained)."""
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    ids = add_query_tokens(tok, 1)
    resize_for_control_tokens(model, tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    manifest = json.loads((source / MANIFEST_FILENAME).read_text())
    manifest["decision_suffix"] = [{"token": tok.convert_ids_to_tokens(ids[0]), "id": ids[0]}]
    manifest["respond_in_context"] = False  # as the demo: answers from the prompt alone
    (out / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    return out


def _with_adapter(suffixed: Path, out: Path) -> Path:
    """A copy of `suffixed` with a random (seeded, non-zero) query adapter."""
    shutil.copytree(suffixed, out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    adapter = add_query_adapter(model, rank=4, alpha=8.0)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    save_query_adapter(adapter, out)
    return out


@pytest.fixture(scope="module")
def suffixed_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _suffixed_copy(tiny_model_dir, tmp_path_factory.mktemp("suffixed") / "m")


@pytest.fixture(scope="module")
def adapted_dir(suffixed_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_adapter(suffixed_dir, tmp_path_factory.mktemp("adapted") / "m")


@pytest.fixture(scope="module")
def without(suffixed_dir: Path) -> LoadedModel:
    """The same model and suffix, no adapter."""
    return load_model(suffixed_dir, dtype="float32")


@pytest.fixture(scope="module")
def adapted(adapted_dir: Path) -> LoadedModel:
    return load_model(adapted_dir, dtype="float32")


def _by_hand(lm: LoadedModel, prompt: str) -> torch.Tensor:
    """Control logits after the suffix: the prompt through the base layers, then the suffix
    through the adapted ones reading the prompt's cache."""
    assert lm.query_adapter is not None
    ids, suffix = lm.encode(prompt), list(lm.manifest.decision_ids)
    with torch.inference_mode():
        cache = DynamicCache(config=lm.model.config)
        lm.model(input_ids=torch.tensor([ids]), use_cache=True, **cache_kwargs(lm.model, cache))
        with lm.query_adapter.at_positions(torch.ones((1, 1, 1))):
            out = lm.model(
                input_ids=torch.tensor([suffix]),
                position_ids=torch.arange(len(ids), len(ids) + len(suffix))[None],
                use_cache=True,
                **cache_kwargs(lm.model, cache),
            )
    return out.logits[0, -1, lm.control_ids].double()  # (C + 1,)


def test_the_decision_goes_through_the_adapter_at_the_suffix_only(
    without: LoadedModel, adapted: LoadedModel
) -> None:
    """Decoding and scoring read the decision after the adapted suffix, as computed by hand, and
    it differs from the same model's without the adapter."""
    requests = [GenerationRequest(p, NO_RULE, SamplingParams(0.7, 0.9, 3, seed=1)) for p in PROMPTS]
    adapter = find_query_adapter(adapted.model)
    assert adapter is not None and llama_blocks(adapted.model) is not None  # decode steps
    with adapter.at_last(1):
        assert llama_blocks(adapted.model) is None  # the adapted prefill runs the wrappers
    generated, _ = Engine(adapted, max_batch_size=64).generate(requests)
    scored = [s.summary for s in score_prompts(adapted, [*PROMPTS])]
    plain, _ = Engine(without).generate(requests)
    for prompt, g, s in zip(PROMPTS, generated, scored, strict=True):
        control = _by_hand(adapted, prompt)
        np.testing.assert_allclose(g.summary.s, control[:C], atol=1e-4)
        np.testing.assert_allclose(g.summary.l1, control[C], atol=1e-4)
        np.testing.assert_allclose(s.s, g.summary.s, atol=1e-4)
    assert all(
        not np.allclose(g.summary.s, p.summary.s, atol=1e-2)
        for g, p in zip(generated, plain, strict=True)
    )
    assert adapted.query_adapter is not None and adapted.query_adapter.gate.positions is None
    # outside the first step's forward the model is the plain model: nothing to pay per step
    assert not any(isinstance(m, GatedLowRank) for m in adapted.model.modules())


def test_answers_and_refusals_are_the_models_without_the_adapter(
    without: LoadedModel, adapted: LoadedModel
) -> None:
    """Forced decisions continue with the very tokens of the model without the adapter, in a mix
    of prompt lengths; a responding row answers from the prompt alone, as the base model."""
    requests = forced_mix()
    expected, _ = Engine(without, max_batch_size=64).generate(requests)
    mixed, _ = Engine(adapted, max_batch_size=64).generate(requests)
    assert [r.token_ids for r in mixed] == [r.token_ids for r in expected]
    answer = mixed[2]
    assert list(answer.token_ids[1:]) == greedy_from_prompt(without, PROMPTS[2], 9)


def test_the_training_evaluation_reads_the_decision_as_the_engine(adapted: LoadedModel) -> None:
    """`first_step_logits` (right-padded, the cards and the probe) applies the adapter at each
    row's own suffix positions and decides as served."""
    prompts = list(PROMPTS[:8])
    logits = first_step_logits(
        adapted.model,
        adapted.tokenizer,
        [({"role": "user", "content": p},) for p in prompts],
        manifest=adapted.manifest,
    )
    for prompt, row in zip(prompts, logits, strict=True):
        np.testing.assert_allclose(
            row[adapted.control_ids].double(), _by_hand(adapted, prompt), atol=1e-4
        )
    greedy = SamplingParams(temperature=0.0, max_new_tokens=2)
    served, _ = Engine(adapted).generate([GenerationRequest(p, NO_RULE, greedy) for p in prompts])
    assert logits.argmax(-1).tolist() == [r.first_token_id for r in served]


def test_a_saved_adapter_round_trips_and_is_checked(
    lm: LoadedModel, adapted: LoadedModel, adapted_dir: Path, tmp_path: Path
) -> None:
    """The directory stays plain transformers (no adapter tensor in its weights); a loaded
    adapter equals the saved one; an adapter that does not fit, or has no suffix to apply to,
    stops the load with the reason."""
    plain = AutoModelForCausalLM.from_pretrained(adapted_dir, dtype=torch.float32)
    assert not any(
        name.endswith((".down", ".up")) or ".base." in name for name, _ in plain.named_parameters()
    )
    assert adapted.query_adapter is not None and adapted.query_adapter.rank == 4
    again = load_model(adapted_dir, dtype="float32")
    assert again.query_adapter is not None
    for a, b in zip(
        again.query_adapter.parameters(), adapted.query_adapter.parameters(), strict=True
    ):
        assert torch.equal(a, b)

    wrong_rank = tmp_path / "wrong"
    shutil.copytree(adapted_dir, wrong_rank)
    config = json.loads((wrong_rank / CONFIG_FILE).read_text())
    (wrong_rank / CONFIG_FILE).write_text(json.dumps({**config, "rank": 2}))
    with pytest.raises(ModelLoadError, match=r"query adapter: .*shape"):
        load_model(wrong_rank, dtype="float32")

    no_suffix = tmp_path / "no-suffix"
    shutil.copytree(adapted_dir, no_suffix)
    (no_suffix / MANIFEST_FILENAME).write_text(json.dumps(lm.manifest.to_json()))
    with pytest.raises(ModelLoadError, match="needs the manifest's decision_suffix"):
        load_model(no_suffix, dtype="float32")

    missing = tmp_path / "missing"
    shutil.copytree(adapted_dir, missing)
    (missing / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="query adapter"):
        load_model(missing, dtype="float32")


def test_lora_dropout_applies_while_training_only() -> None:
    """Dropout of the update's input while gradients are recorded; evaluation and the engine
    (no gradients) see the whole update, the same every time."""
    torch.manual_seed(0)
    layer = GatedLowRank(torch.nn.Linear(16, 8), rank=4, alpha=8.0, gate=Gate())
    with torch.no_grad():
        layer.up.copy_(torch.randn_like(layer.up))
    layer.gate.positions = torch.ones((1, 1, 1))
    x = torch.randn(2, 3, 16)
    whole = layer(x).detach()
    layer.dropout = 0.5
    with torch.no_grad():
        assert torch.equal(layer(x), whole)
    dropped = layer(x)
    assert dropped.requires_grad and not torch.allclose(dropped, whole)
    layer.dropout = 0.0
    assert torch.equal(layer(x).detach(), whole)
