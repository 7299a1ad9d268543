"""The decision query on the tiny model: states from cached prompts are those of a plain forward
pass over prompt + query (what the engine and the evaluation read), only the query's input rows
train, and the demo recipe's step wires its tokens into the tokenizer and the manifest's place."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest
import torch

from core.categories import CLASSES
from workers.engine.prompt_tokens import encode_prompt
from workers.engine.query_adapter import TARGETS, add_query_adapter, find_query_adapter
from workers.training.data import generate, split
from workers.training.decision_query import (
    LR_SCHEDULES,
    QUERY_TOKEN_TEXTS,
    add_query_tokens,
    cache_prompts,
    freeze_below,
    lr_factor,
    query_states,
    train_query,
)
from workers.training.demo import RECIPE, validation_split
from workers.training.demo_head import fit_demo_head, head_line
from workers.training.demo_query import train_query_tokens
from workers.training.evaluate import decision_states


def _examples(seed: int, n: int) -> list:
    return split(generate(seed, examples_per_class=4))[0][:n]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_cached_query_states_equal_a_plain_forward_pass(untied, attention: str) -> None:
    model, tok = untied
    model.set_attn_implementation(attention)  # eager attention takes an additive mask
    prompts = [encode_prompt(tok, e.messages) for e in _examples(1, 20)]
    query = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    batches = cache_prompts(model, prompts, tok.pad_token_id, batch_size=7)
    states = query_states(model, batches, len(prompts), query)
    plain = query_states(model, batches, len(prompts), None)
    emb = model.get_input_embeddings()
    with torch.no_grad():
        for i, ids in enumerate(prompts):
            embeds = torch.cat([emb(torch.tensor([ids])), query[None]], 1)  # (1, T + 2, H)
            alone = model.base_model(inputs_embeds=embeds).last_hidden_state[0]
            assert torch.allclose(states[i], alone[-1], atol=1e-4)
            assert torch.allclose(plain[i], alone[len(ids) - 1], atol=1e-4)


def test_caches_stored_in_float16_take_half_and_give_nearly_the_same_states(untied) -> None:
    model, tok = untied
    prompts = [encode_prompt(tok, e.messages) for e in _examples(3, 12)]
    query = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    full = cache_prompts(model, prompts, tok.pad_token_id, batch_size=5)
    half = cache_prompts(model, prompts, tok.pad_token_id, batch_size=5, store_dtype=torch.float16)
    assert all(k.dtype == torch.float16 and v.dtype == torch.float16 for b in half for k, v in b.kv)
    assert sum(k.nbytes for b in half for k, _ in b.kv) * 2 == sum(
        k.nbytes for b in full for k, _ in b.kv
    )
    exact = query_states(model, full, len(prompts), query)
    rounded = query_states(model, half, len(prompts), query)
    assert rounded.dtype == exact.dtype
    assert not torch.equal(rounded, exact)  # the keys and values really were rounded
    assert torch.allclose(rounded, exact, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_only_the_query_trains_and_its_loss_falls(untied, schedule: str) -> None:
    model, tok = untied
    examples = _examples(2, 96)
    batches = cache_prompts(model, [encode_prompt(tok, e.messages) for e in examples], 0)
    labels = torch.tensor([CLASSES.index(e.label) for e in examples])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vocab = len(tok) - len(CLASSES)
    start = torch.zeros(1, model.config.hidden_size)
    query, info = train_query(
        model,
        batches,
        labels,
        query=start,
        rows=model.lm_head.weight.detach()[vocab:],
        vocab=vocab,
        epochs=4,
        lr=0.05,
        weight_decay=1e-3,
        seed=0,
        log=lambda _: None,
        schedule=schedule,
    )
    assert info["schedule"] == schedule
    losses = info["epoch_losses"]
    assert isinstance(losses, list) and losses[-1] < losses[0]
    assert not torch.equal(query, start)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_the_recipe_step_adds_query_tokens_and_gives_the_states_the_engine_reads(
    untied,
) -> None:
    model, tok = untied
    vocab = len(tok)
    examples = _examples(3, 80)
    labels = torch.tensor([CLASSES.index(e.label) for e in examples])
    rc = replace(
        RECIPE,
        query_tokens=2,
        query_prompts=30,
        query_epochs=2,
        query_freeze_after=1,
        query_frozen_blocks=1,  # of the tiny model's two
    )
    ids, info, states = train_query_tokens(
        model, tok, examples, labels, vocab - len(CLASSES), rc, seed=0, log=lambda _: None
    )
    assert ids == [vocab, vocab + 1] and info is not None and info["prompts"] == 30
    assert info["frozen"] == {"after_epoch": 1, "blocks": 1}
    assert "the lowest 1 blocks and the query's rows frozen after epoch 1" in info["summary"]
    assert tok.convert_ids_to_tokens(ids) == list(QUERY_TOKEN_TEXTS[:2])
    assert model.get_input_embeddings().weight.shape[0] == vocab + 2
    assert torch.count_nonzero(model.lm_head.weight[ids]) == 0  # never an answer's token
    assert len(states) == 30
    adapter = find_query_adapter(model)  # trained beside the query, off outside its positions
    assert adapter is not None and adapter.rank == rc.query_adapter_rank
    assert adapter.gate.positions is None
    assert all(torch.count_nonzero(layer.up) for layer in adapter.layers.values())
    again = decision_states(model, tok, [examples[i].messages for i in states], suffix=ids)
    # equal but for the float16 rounding of the training caches' keys and values
    assert torch.allclose(torch.stack(list(states.values())), again, atol=2e-3, rtol=1e-3)
    val = [i for i in range(len(examples)) if i not in states][:12]
    rows, wd, scores, fitted = fit_demo_head(
        model, tok, examples, labels, vocab - len(CLASSES), known=states, validation=val,
        suffix=ids, weight_decays=(1e-3, 1e-2), seed=0, log=lambda _: None,
    )  # fmt: skip
    assert rows.shape == (len(CLASSES), model.config.hidden_size) and fitted == 30 + 12
    assert set(scores) == {1e-3, 1e-2} and wd in scores
    line = head_line(fitted, wd, scores, 1.0)
    assert f"weight decay {wd}" in line and "log-loss" in line and "accuracy" in line
    typed = encode_prompt(tok, [{"role": "user", "content": f"say {QUERY_TOKEN_TEXTS[0]}"}])
    assert not set(typed) & set(ids)  # typed in a prompt, a query token is only text
    with pytest.raises(RuntimeError, match="query tokens"):
        add_query_tokens(tok, 1)  # already there: it would not get a new id


def test_the_query_never_trains_on_the_validation_templates() -> None:
    """The head's decay is chosen on prompts of templates the query did not see."""
    examples = split(generate(5, examples_per_class=40))[0]
    rc = replace(RECIPE, validation_templates=0.2, validation_prompts=30)
    pool, val = validation_split(examples, rc, seed=0)
    assert len(val) == 30 and pool and not set(pool) & set(val)
    seen = {examples[i].template_id for i in pool}
    assert not seen & {examples[i].template_id for i in val}
    assert len(pool) + len(val) < len(examples)  # the rest of the held templates: unused
    assert validation_split(examples, rc, seed=0) == (pool, val)  # the seed decides
    with pytest.raises(ValueError, match="validation prompts"):
        validation_split(examples, replace(rc, validation_templates=0.0), seed=0)


def test_the_cosine_schedule_runs_the_rates_down_to_zero_over_the_steps() -> None:
    assert [lr_factor("constant", t, 10) for t in (0, 5, 10)] == [1.0, 1.0, 1.0]
    cosine = [lr_factor("cosine", t, 10) for t in range(11)]
    assert cosine[0] == 1.0 and abs(cosine[5] - 0.5) < 1e-12 and abs(cosine[10]) < 1e-12
    assert all(a > b for a, b in pairwise(cosine))


def test_an_unknown_schedule_is_refused_before_training(untied) -> None:
    model, tok = untied
    vocab = len(tok) - len(CLASSES)
    with pytest.raises(ValueError, match="schedule"):
        train_query(
            model,
            [],
            torch.zeros(0, dtype=torch.long),
            query=torch.zeros(1, model.config.hidden_size),
            rows=model.lm_head.weight.detach()[vocab:],
            vocab=vocab,
            epochs=1,
            lr=0.01,
            weight_decay=0.0,
            seed=0,
            log=lambda _: None,
            schedule="linear",
        )


def test_states_run_from_a_frozen_block_equal_those_run_through_every_block(untied) -> None:
    model, tok = untied
    prompts = [encode_prompt(tok, e.messages) for e in _examples(4, 15)]
    query = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    batches = cache_prompts(model, prompts, tok.pad_token_id, batch_size=6)
    upper = freeze_below(model, batches, query, 1)
    assert all(
        b.first == 1 and len(b.kv) == len(a.kv) - 1 for a, b in zip(batches, upper, strict=True)
    )
    assert all(b.entry is not None and b.entry.shape[1:] == (2, query.shape[1]) for b in upper)
    whole = query_states(model, batches, len(prompts), query)
    assert torch.allclose(query_states(model, upper, len(prompts), query), whole, atol=1e-6)
    with pytest.raises(ValueError, match="already frozen"):
        freeze_below(model, upper, query, 1)


def test_after_the_freeze_only_the_blocks_above_it_train(untied) -> None:
    model, tok = untied
    examples = _examples(6, 64)
    batches = cache_prompts(model, [encode_prompt(tok, e.messages) for e in examples], 0)
    labels = torch.tensor([CLASSES.index(e.label) for e in examples])
    vocab = len(tok) - len(CLASSES)
    adapter = add_query_adapter(model, 4, 8.0)
    lower, upper = (
        adapter.parameters_below(1),
        set(adapter.parameters()) - set(adapter.parameters_below(1)),
    )
    assert len(lower) == len(upper) == 2 * len(TARGETS)
    seen: list[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]] = []

    def keep(_: int, query: torch.Tensor) -> None:
        seen.append((query.clone(), [p.clone() for p in lower], [p.clone() for p in upper]))

    with adapter.at_positions(torch.ones((1, 1, 1))):
        _, info = train_query(
            model, batches, labels, query=torch.zeros(1, model.config.hidden_size),
            rows=model.lm_head.weight.detach()[vocab:], vocab=vocab, epochs=3, lr=0.05,
            weight_decay=0.0, seed=0, log=lambda _: None, extra=adapter.parameters(),
            on_epoch=keep, freeze_after=1, frozen_blocks=1, frozen_extra=lower,
        )  # fmt: skip
    assert info["frozen"] == {"after_epoch": 1, "blocks": 1}
    assert isinstance(info["epoch_seconds"], list) and len(info["epoch_seconds"]) == 3
    (q1, low1, up1), (q3, low3, up3) = seen[0], seen[2]
    assert torch.equal(q1, q3) and all(map(torch.equal, low1, low3))
    assert not all(map(torch.equal, up1, up3))  # the block above the freeze still trained
    with pytest.raises(ValueError, match="frozen_blocks"):
        train_query(
            model, batches, labels, query=q3, rows=model.lm_head.weight.detach()[vocab:],
            vocab=vocab, epochs=1, lr=0.05, weight_decay=0.0, seed=0, log=lambda _: None,
            freeze_after=1, frozen_blocks=2,
        )  # fmt: skip


def test_label_smoothing_keeps_the_query_s_loss_above_its_target_s_entropy(untied) -> None:
    model, tok = untied
    examples = _examples(7, 64)
    batches = cache_prompts(model, [encode_prompt(tok, e.messages) for e in examples], 0)
    labels = torch.tensor([CLASSES.index(e.label) for e in examples])
    vocab = len(tok) - len(CLASSES)

    def final_loss(smoothing: float) -> float:
        _, info = train_query(
            model, batches, labels, query=torch.zeros(1, model.config.hidden_size),
            rows=model.lm_head.weight.detach()[vocab:], vocab=vocab, epochs=12, lr=0.1,
            weight_decay=0.0, seed=0, log=lambda _: None, label_smoothing=smoothing,
        )  # fmt: skip
        assert info.get("label_smoothing", 0.0) == smoothing
        losses = info["epoch_losses"]
        assert isinstance(losses, list)
        return float(losses[-1])

    smoothing, classes = 0.5, len(CLASSES) + 1  # the ordinary tokens are one more class
    target = torch.full((classes,), smoothing / classes)
    target[0] += 1 - smoothing
    floor = float(-(target * target.log()).sum())  # cross-entropy >= the target's entropy
    assert final_loss(smoothing) >= floor
    assert final_loss(0.0) < floor  # without it the same training fits further
    with pytest.raises(ValueError, match="label_smoothing"):
        final_loss(1.0)
