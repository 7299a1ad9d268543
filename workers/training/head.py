"""A refusal head on a frozen model: the control tokens' output rows, fitted to its final states.

The base model's weights stay as they are. Its final hidden state at the position where the answer
starts (after the chat template's generation prompt) is computed once per training prompt; the
six control tokens' rows of an untied output head are then a multinomial logistic regression over
those states, trained with the full vocabulary's softmax (the ordinary tokens' log-sum-exp is one
fixed competitor per prompt), so the control token wins the full-vocabulary argmax where the
label says so. Every ordinary token's logit is the base model's, at every position.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import PreTrainedModel


def untie_head(model: PreTrainedModel) -> None:
    """Give the model its own output head (a copy of the tied embedding), so the control tokens'
    output rows can change without changing their input rows or any other token."""
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False


def ordinary_logsumexp(states: torch.Tensor, head: torch.Tensor, vocab: int) -> torch.Tensor:
    """log sum exp of the ordinary tokens' logits (ids below `vocab`) per state: (N,)."""
    return torch.cat([(s @ head[:vocab].T).logsumexp(-1) for s in states.split(1024)])  # (N,)


def fit_rows(
    states: torch.Tensor,  # (N, H)
    labels: torch.Tensor,  # (N,) index into the control rows
    others: torch.Tensor,  # (N,) ordinary tokens' log-sum-exp
    *,
    weight_decay: float,
    init: torch.Tensor,  # (K, H)
    max_iter: int = 500,
) -> torch.Tensor:
    """Control rows (K, H) minimising full-vocabulary cross-entropy + weight_decay * |rows|^2."""
    rows = init.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([rows], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = _full_logits(rows, states, others)  # every ordinary token as one competitor
        loss = F.cross_entropy(logits, labels) + weight_decay * rows.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return rows.detach()


def _full_logits(rows: torch.Tensor, states: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Control logits and the ordinary tokens' log-sum-exp as one competitor: (N, K + 1)."""
    return torch.cat([states @ rows.T, others[:, None]], dim=-1)


def held_out_accuracy(
    rows: torch.Tensor,  # (K, H)
    states: torch.Tensor,  # (N, H)
    labels: torch.Tensor,  # (N,)
    others: torch.Tensor,  # (N,)
) -> float:
    """Accuracy of `rows` on states they were not fitted to (full-vocabulary argmax)."""
    return float((_full_logits(rows, states, others).argmax(-1) == labels).float().mean())


def held_out_log_loss(
    rows: torch.Tensor,  # (K, H)
    states: torch.Tensor,  # (N, H)
    labels: torch.Tensor,  # (N,)
    others: torch.Tensor,  # (N,)
) -> float:
    """Mean full-vocabulary cross-entropy of `rows` on states they were not fitted to."""
    return float(F.cross_entropy(_full_logits(rows, states, others), labels))


def _best(scores: dict[float, float]) -> float:
    """The decay with the best score; ties go to the larger decay."""
    return max(scores, key=lambda wd: (scores[wd], wd))


def choose_weight_decay(
    states: torch.Tensor,
    labels: torch.Tensor,
    others: torch.Tensor,
    init: torch.Tensor,
    candidates: Sequence[float],
    *,
    groups: Sequence[str],
    seed: int,
    folds: int = 2,
) -> tuple[float, dict[float, float]]:
    """The candidate with the best mean accuracy on prompts of held-out groups (templates),
    and each candidate's mean accuracy; ties go to the larger decay.

    Each fold holds out a tenth of the groups, so validation prompts are new phrasings, as the
    held-out split's are; a random tenth of the prompts shares templates with the fit and
    rewarded fitting them (it chose 1e-4 where this chooses 3e-3, docs/models.md). Never an
    evaluation set."""
    names = sorted(set(groups))
    totals = dict.fromkeys(candidates, 0.0)
    for fold in range(folds):
        held = set(random.Random(seed + fold).sample(names, max(1, len(names) // 10)))
        val = torch.tensor([i for i, g in enumerate(groups) if g in held])
        fit = torch.tensor([i for i, g in enumerate(groups) if g not in held])
        for wd in candidates:
            rows = fit_rows(states[fit], labels[fit], others[fit], weight_decay=wd, init=init)
            totals[wd] += held_out_accuracy(rows, states[val], labels[val], others[val])
    scores = {wd: round(total / folds, 4) for wd, total in totals.items()}
    return _best(scores), scores


def choose_weight_decay_on(
    fit: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    held: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    init: torch.Tensor,
    candidates: Sequence[float],
) -> tuple[float, dict[float, dict[str, float]]]:
    """The candidate whose rows, fitted on `fit` (states, labels, others), have the lowest
    log-loss on `held`, and each candidate's log-loss and accuracy there; ties go to the larger
    decay.

    Log-loss, a proper score, rather than accuracy: the service thresholds and biases the
    control tokens' probabilities, so they must be right on new phrasings, not only their
    argmax (session 17's rows: accuracy 0.920-0.925 at every decay, log-loss lowest at 3e-3).
    For states that a trained query has seen: folds over its own training prompts validate on
    prompts it fitted (accuracy 0.998-0.999 at every decay, and the weakest decay won), so the
    held-out prompts must come from templates the query never trained on."""
    scores: dict[float, dict[str, float]] = {}
    for wd in candidates:
        rows = fit_rows(*fit, weight_decay=wd, init=init)
        scores[wd] = {
            "log_loss": round(held_out_log_loss(rows, *held), 4),
            "accuracy": round(held_out_accuracy(rows, *held), 4),
        }
    return _best({wd: -score["log_loss"] for wd, score in scores.items()}), scores
