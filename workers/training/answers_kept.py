"""Are the fine-tuned model's answers still the base model's? (issue 16, point 4)

After a forced `[respond]`, the fine-tuned model's greedy answer to a held-out respond prompt
should be the base model's greedy answer: this counts the prompts whose first `KEPT_TOKENS`
answer tokens are identical (up to the end of turn when the answer is shorter). Both models
generate in the same batches with the same left padding, so padding cannot make a difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from core.categories import RESPOND, token_for
from workers.engine.openers import BanOpenersProcessor, OpenerBan
from workers.training.data import Example
from workers.training.evaluate import MaskControlAfterFirst, answer_masked_ids
from workers.training.train import prompt_text

KEPT_PROMPTS = 100
KEPT_TOKENS = 16


def heldout_respond_prompts(heldout: Sequence[Example], limit: int = KEPT_PROMPTS) -> list[str]:
    """The first `limit` distinct single-turn held-out prompts labelled `respond`."""
    single = [
        e.messages[0]["content"] for e in heldout if e.label == RESPOND and len(e.messages) == 1
    ]
    return list(dict.fromkeys(single))[:limit]


@torch.no_grad()
def greedy_tokens(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    first_token: str = "",
    in_context: bool = True,
    max_new_tokens: int = KEPT_TOKENS,
    batch_size: int = 20,
    ban: OpenerBan | None = None,
) -> list[list[int]]:
    """Greedy answer token ids (cut after the end of turn) of single-turn prompts, batched.

    With `first_token` the answer is forced to start with it and control tokens are masked
    from then on (as the service does after the first step); without `in_context` the answer
    after it is decoded from the prompt alone (a manifest's `respond_in_context: false`); `ban`
    keeps the answer from opening with a banned opener, as the engine does after `[respond]`."""
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    processors = LogitsProcessorList()
    if first_token:
        processors.append(MaskControlAfterFirst(0, answer_masked_ids(tokenizer)))
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: list[list[int]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [
                prompt_text(tokenizer, [{"role": "user", "content": p}])
                + (first_token if in_context else "")
                for p in prompts[start : start + batch_size]
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            start = enc.input_ids.shape[1]
            banning = [BanOpenersProcessor(ban, start)] if ban else []
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eot,
                pad_token_id=tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList([*processors, *banning]),
            )
            for row in gen[:, enc.input_ids.shape[1] :].tolist():
                out.append(row[: row.index(eot) + 1] if eot in row else row)
    finally:
        tokenizer.padding_side = side
    return out


def answers_kept(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    base: Sequence[list[int]],
    *,
    in_context: bool = True,
    ban: OpenerBan | None = None,
) -> dict[str, object]:
    """Share of prompts whose forced-`[respond]` greedy answer starts with the base answer's
    first `KEPT_TOKENS` tokens (`base` from `greedy_tokens` on the base model)."""
    tuned = greedy_tokens(
        model, tokenizer, prompts, first_token=token_for(RESPOND), in_context=in_context, ban=ban
    )
    kept = [t[:KEPT_TOKENS] == b[:KEPT_TOKENS] for t, b in zip(tuned, base, strict=True)]
    differ = [
        (p, tokenizer.decode(b), tokenizer.decode(t))
        for p, b, t, k in zip(prompts, base, tuned, kept, strict=True)
        if not k
    ]
    return {
        "n": len(prompts),
        "tokens": KEPT_TOKENS,
        "kept": sum(kept),
        "rate": sum(kept) / max(1, len(prompts)),
        "examples": differ[:5],
    }
