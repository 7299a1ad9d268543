"""The demo's refusal head: its control rows fitted to decision states, its weight decay chosen
on prompts the decision query never trained on (`head.py` holds the regression itself)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.categories import CLASSES
from workers.training.data import Example
from workers.training.evaluate import decision_states
from workers.training.head import (
    choose_weight_decay,
    choose_weight_decay_on,
    fit_rows,
    ordinary_logsumexp,
)


def fit_demo_head(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    train_ex: Sequence[Example],
    labels: torch.Tensor,  # (N,)
    old_vocab: int,
    *,
    known: Mapping[int, torch.Tensor],
    validation: Sequence[int],
    suffix: Sequence[int],
    weight_decays: Sequence[float],
    seed: int,
    log: Callable[[str], None],
) -> tuple[torch.Tensor, float, dict[float, dict[str, float]], int]:
    """(control rows (K, H), chosen decay, each decay's validation scores, states fitted).

    With a trained query (`known`: its prompts' states by index into `train_ex`) the rows are
    fitted where it trained (its caches give those states for free; the states of every other
    training prompt cost a third of the build for no measured gain, docs/models.md), the decay
    chosen on the `validation` prompts, whose templates it never saw, which then join the fit.
    Without one, every training prompt's state, the decay chosen on folds of templates."""
    head = model.get_output_embeddings().weight.detach()
    init = head[old_vocab : old_vocab + len(CLASSES)]
    scores: dict[float, dict[str, float]]
    if known:
        fit = list(known)
        states = torch.stack(list(known.values()))  # (N_fit, H)
        others = ordinary_logsumexp(states, head, old_vocab)
        val_states = decision_states(
            model, tok, [train_ex[i].messages for i in validation], suffix=suffix, log=log
        )
        val_others = ordinary_logsumexp(val_states, head, old_vocab)
        wd, scores = choose_weight_decay_on(
            (states, labels[fit], others),
            (val_states, labels[list(validation)], val_others),
            init,
            weight_decays,
        )
        fit += validation
        states = torch.cat([states, val_states])
        others = torch.cat([others, val_others])
    else:
        fit = list(range(len(train_ex)))
        states = decision_states(model, tok, [e.messages for e in train_ex], log=log)
        others = ordinary_logsumexp(states, head, old_vocab)
        wd, accuracy = choose_weight_decay(
            states,
            labels,
            others,
            init,
            weight_decays,
            groups=[e.template_id for e in train_ex],
            seed=seed,
        )
        scores = {decay: {"accuracy": score} for decay, score in accuracy.items()}
    rows = fit_rows(states, labels[fit], others, weight_decay=wd, init=init)
    return rows, wd, scores, len(fit)


def head_line(
    fitted: int, wd: float, scores: Mapping[float, Mapping[str, float]], seconds: float
) -> str:
    """The model card's line on the head: states fitted, the decay and its validation scores."""
    there = ", ".join(f"{name.replace('_', '-')} {value:.3f}" for name, value in scores[wd].items())
    return (
        f"refusal head: {fitted} decision states, weight decay {wd} chosen on held-out training "
        f"templates ({there} there), {seconds:.0f} s"
    )
