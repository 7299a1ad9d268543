"""Held-out evaluation: first-step logits, full-vocabulary argmax, per-class metrics, samples.

A prediction is the class whose control token is the argmax of the first-step logits over the
whole vocabulary; an ordinary token winning counts as `other` (always wrong).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from core.categories import CLASSES, RESPOND, RefusalManifest, token_for
from workers.engine.openers import BanOpenersProcessor, OpenerBan
from workers.engine.prompt_tokens import encode_prompt
from workers.engine.query_adapter import find_query_adapter
from workers.training.decision_query import QUERY_TOKEN_TEXTS
from workers.training.train import prompt_text

OTHER = "other"
CONTROL_TOKEN_TEXTS = tuple(token_for(c) for c in CLASSES)


def answer_masked_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids no answer token may be (as the engine masks them): the control tokens, and the
    decision query's tokens when the tokenizer has them."""
    vocab = tokenizer.get_vocab()
    texts = [*CONTROL_TOKEN_TEXTS, *(t for t in QUERY_TOKEN_TEXTS if t in vocab)]
    return list(tokenizer.convert_tokens_to_ids(texts))


@torch.no_grad()
def decision_states(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
    *,
    suffix: Sequence[int] = (),
    batch_size: int = 32,
    log: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Final hidden state where each conversation's first answer token is decided: (N, H)
    float32; after the prompt, or after a decision `suffix` appended to it.

    Prompts run in batches of similar length (less padding), right-padded, so every row keeps its
    own positions."""
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # as the engine encodes them
    rows = [[*encode_prompt(tokenizer, c), *suffix] for c in conversations]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = torch.empty((len(rows), model.config.hidden_size))
    adapter = find_query_adapter(model)  # applies at the suffix's positions only
    for n, start in enumerate(range(0, len(order), batch_size)):
        chunk = order[start : start + batch_size]
        width = max(len(rows[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros_like(ids)  # (B, T)
        for j, i in enumerate(chunk):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            mask[j, : len(rows[i])] = 1
        last = torch.tensor([len(rows[i]) - 1 for i in chunk])
        at = (last[:, None] - torch.arange(width)[None] < len(suffix)) & (mask > 0)  # (B, T)
        with adapter.at_positions(at[..., None].float()) if adapter and suffix else nullcontext():
            hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        out[chunk] = hidden[torch.arange(len(chunk)), last].float()
        if log and n % 40 == 0:
            log(f"[states] decision states {start + len(chunk)}/{len(rows)}")
    return out


@torch.no_grad()
def first_step_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
    *,
    manifest: RefusalManifest | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Float32 logits of the first response token for each conversation: (N, V).

    With a manifest that has a decision suffix they are read after it, as the engine reads
    them: only the control tokens are candidates there (every other logit is -inf)."""
    suffix = manifest.decision_ids if manifest else ()
    states = decision_states(model, tokenizer, conversations, suffix=suffix, batch_size=batch_size)
    logits = model.lm_head(states).float()  # (N, V)
    if not suffix:
        return logits
    assert manifest is not None
    control = list(manifest.all_ids)
    return torch.full_like(logits, -math.inf).index_copy_(
        1, torch.tensor(control), logits[:, control]
    )


def predict_classes(logits: torch.Tensor, manifest: RefusalManifest) -> list[str]:
    """Full-vocabulary argmax mapped to a class name, or `other`."""
    by_id = manifest.class_of_id
    return [by_id.get(int(i), OTHER) for i in logits.argmax(-1)]


def classification_report(truth: Sequence[str], pred: Sequence[str]) -> dict[str, object]:
    """Per-class precision/recall/F1, confusion matrix (truth rows x predicted columns), accuracy."""
    columns = [*CLASSES, OTHER]
    confusion = {t: dict.fromkeys(columns, 0) for t in CLASSES}
    for t, p in zip(truth, pred, strict=True):
        confusion[t][p] += 1
    per_class: dict[str, dict[str, float]] = {}
    for c in CLASSES:
        tp = confusion[c][c]
        predicted = sum(confusion[t][c] for t in CLASSES)
        actual = sum(confusion[c].values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    correct = sum(confusion[c][c] for c in CLASSES)
    return {
        "per_class": per_class,
        "confusion": confusion,
        "accuracy": correct / max(1, len(truth)),
        "macro_f1": sum(v["f1"] for v in per_class.values()) / len(CLASSES),
        "n": len(truth),
        "argmax": "full vocabulary",
    }


class MaskControlAfterFirst(LogitsProcessor):
    """Control tokens may only be the first generated token (as the serving engine does)."""

    def __init__(self, prompt_len: int, control_ids: Sequence[int]) -> None:
        self.prompt_len = prompt_len
        self.control_ids = list(control_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.prompt_len:
            scores[:, self.control_ids] = -math.inf
        return scores


@torch.no_grad()
def sample_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 40,
    first_token: str = "",
    manifest: RefusalManifest | None = None,
) -> list[str]:
    """Greedy answers (control token kept, and masked after the first step) to single prompts,
    as the engine makes them.

    With `first_token` the answer is forced to start with it (it is part of the prompt, and of
    the returned answer). With a manifest that keeps `[respond]` out of the answer's context, an
    answer that starts with it is decoded from the prompt alone; with one that has a decision
    suffix, the first token is decided after the suffix: both as the engine does."""
    answers: list[str] = []
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    control = answer_masked_ids(tokenizer)
    respond = token_for(RESPOND)
    respond_in_context = manifest.respond_in_context if manifest else True
    openers = manifest.respond_banned_openers if manifest else ()
    ban = OpenerBan.from_texts(tokenizer, openers) if openers else None
    decided = [first_token] * len(prompts)
    if not first_token and manifest and (manifest.decision_ids or not respond_in_context):
        logits = first_step_logits(
            model,
            tokenizer,
            [({"role": "user", "content": p},) for p in prompts],
            manifest=manifest,
        )
        decided = [
            tokenizer.convert_ids_to_tokens(i) if i in manifest.all_ids else ""
            for i in logits.argmax(-1).tolist()
        ]
    for prompt, lead in zip(prompts, decided, strict=True):
        text = prompt_text(tokenizer, [{"role": "user", "content": prompt}])
        outside = lead == respond and not respond_in_context
        ids = torch.tensor(
            [tokenizer(text + ("" if outside else lead), add_special_tokens=False).input_ids]
        )
        # A lead token is already the first: every generated token is a later one.
        processors = [MaskControlAfterFirst(0 if outside or lead else ids.shape[1], control)]
        if lead == respond and ban:
            processors.append(BanOpenersProcessor(ban, ids.shape[1]))
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eot,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList(processors),
        )
        new = gen[0, ids.shape[1] :]
        answer = tokenizer.decode(new, skip_special_tokens=False).replace("<|im_end|>", "")
        answers.append(lead + answer.strip())
    return answers
