"""The demo recipe's parts on the tiny model: the refusal head fitted to frozen final states, the
soft-prompt input rows, and the untied head surviving save and load. Nothing else may change."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from core.categories import CLASSES
from workers.engine.prompt_tokens import encode_prompt
from workers.training.data import generate, split
from workers.training.evaluate import decision_states
from workers.training.head import (
    choose_weight_decay,
    choose_weight_decay_on,
    fit_rows,
    ordinary_logsumexp,
)
from workers.training.soft_tokens import SoftItem, train_soft_tokens


def _snapshot(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_decision_states_are_where_the_first_token_is_decided(untied) -> None:
    """Batched by length with right padding, each state is the one its prompt gives alone."""
    model, tok = untied
    convs = [e.messages for e in split(generate(1, examples_per_class=3))[1][:20]]
    states = decision_states(model, tok, convs, batch_size=7)
    with torch.no_grad():
        alone = torch.stack(
            [
                model.base_model(input_ids=torch.tensor([encode_prompt(tok, c)])).last_hidden_state[
                    0, -1
                ]
                for c in convs
            ]
        )
    assert torch.allclose(states, alone, atol=1e-4)


def test_fitted_rows_win_the_full_vocabulary_and_nothing_else_moves(untied) -> None:
    model, tok = untied
    first = len(tok) - len(CLASSES)
    examples = split(generate(2, examples_per_class=4))[0][:120]
    states = decision_states(model, tok, [e.messages for e in examples])
    labels = torch.tensor([CLASSES.index(e.label) for e in examples])
    head = model.lm_head.weight
    others = ordinary_logsumexp(states, head.detach(), first)
    noise = torch.randn(len(CLASSES), states.shape[1], generator=torch.Generator().manual_seed(0))
    before = _snapshot(model)
    rows = fit_rows(states, labels, others, weight_decay=1e-4, init=noise)
    with torch.no_grad():
        head[first:] = rows
    logits = model.lm_head(states)
    assert (logits.argmax(-1) == labels + first).float().mean() > 0.9  # the control token wins
    after = model.state_dict()
    assert torch.equal(after["lm_head.weight"][:first], before["lm_head.weight"][:first])
    for name in before:
        if name != "lm_head.weight":
            assert torch.equal(after[name], before[name]), name


def test_soft_tokens_train_only_the_control_input_rows(untied, tmp_path: Path) -> None:
    model, tok = untied
    first = len(tok) - len(CLASSES)
    examples = [e for e in split(generate(3, examples_per_class=4))[0] if len(e.messages) == 1]
    items = [
        SoftItem(
            encode_prompt(tok, e.messages),
            first + CLASSES.index(e.label),
            tok(e.reply, add_special_tokens=False).input_ids[:12],
            distil=i % 2 == 0,
        )
        for i, e in enumerate(examples[:24])
    ]
    before = _snapshot(model)
    report = train_soft_tokens(
        model,
        items,
        first_id=first,
        count=len(CLASSES),
        steps=6,
        batch_size=6,
        lr=0.05,
        pad=tok.pad_token_id,
        seed=0,
        log=lambda _: None,
    )
    after = model.state_dict()
    emb = "model.embed_tokens.weight"
    assert not torch.equal(after[emb][first:], before[emb][first:])
    assert torch.equal(after[emb][:first], before[emb][:first])
    for name in before:
        if name != emb:
            assert torch.equal(after[name], before[name]), name
    assert report["steps"] == 6 and report["items"] == 24
    # untied on disk too: the head and the embedding load back as two different matrices
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)
    assert torch.equal(again.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert not torch.equal(again.lm_head.weight, again.model.embed_tokens.weight)


def test_weight_decay_is_chosen_on_held_out_groups_with_ties_to_the_larger() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 3
    centres = torch.randn(3, 8, generator=gen) * 4
    states = centres[labels] + torch.randn(120, 8, generator=gen)
    others = torch.full((120,), -30.0)  # no ordinary token competes
    groups = [f"t{i % 40}" for i in range(120)]
    init = torch.zeros(3, 8)
    wd, scores = choose_weight_decay(
        states, labels, others, init, (1e-9, 2e-9), groups=groups, seed=0
    )
    assert set(scores) == {1e-9, 2e-9}
    assert scores[1e-9] == scores[2e-9] == 1.0  # separable: both perfect on unseen groups
    assert wd == 2e-9  # a tie goes to the stronger decay
    wd, scores = choose_weight_decay(
        states, labels, others, init, (1e-4, 100.0), groups=groups, seed=0
    )
    assert wd == 1e-4 and scores[1e-4] > scores[100.0]


def test_weight_decay_chosen_on_given_held_out_states() -> None:
    """Rows fitted on one set, scored on another: the decay that generalises wins, ties go to
    the larger."""
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 8, generator=gen) * 4
    labels = torch.arange(90) % 3
    fit_states = centres[labels] + torch.randn(90, 8, generator=gen)
    held_states = centres[labels] + torch.randn(90, 8, generator=gen)
    others = torch.full((90,), 1.0)  # an ordinary token wins unless the rows outgrow it
    init = torch.zeros(3, 8)
    fit, held = (fit_states, labels, others), (held_states, labels, others)
    wd, scores = choose_weight_decay_on(fit, held, init, (1e-9, 1e-9 * (1 + 1e-12)))
    assert scores[1e-9] == scores[1e-9 * (1 + 1e-12)] and wd == 1e-9 * (1 + 1e-12)
    wd, scores = choose_weight_decay_on(fit, held, init, (1e-4, 100.0))
    assert wd == 1e-4 and scores[1e-4]["accuracy"] > scores[100.0]["accuracy"]
    assert scores[1e-4]["log_loss"] < scores[100.0]["log_loss"]


def test_the_decay_is_chosen_by_log_loss_where_accuracy_cannot_tell() -> None:
    """Separable classes: both decays classify every held-out state right, so accuracy ties
    (and its tie rule would take the larger); log-loss sees that the stronger one leaves the
    probabilities needlessly timid."""
    gen = torch.Generator().manual_seed(2)
    centres = torch.randn(3, 8, generator=gen) * 6
    labels = torch.arange(120) % 3
    fit_states = centres[labels] + 0.5 * torch.randn(120, 8, generator=gen)
    held_states = centres[labels] + 1.5 * torch.randn(120, 8, generator=gen)
    others = torch.full((120,), -50.0)  # no ordinary token competes
    wd, scores = choose_weight_decay_on(
        (fit_states, labels, others), (held_states, labels, others), torch.zeros(3, 8), (1e-6, 1e-2)
    )
    assert scores[1e-6]["accuracy"] == scores[1e-2]["accuracy"] == 1.0
    assert scores[1e-6]["log_loss"] < scores[1e-2]["log_loss"]
    assert wd == 1e-6
