"""The base model's own answers for the demo recipe, and the soft-token items made from them.

`[respond]`'s input row is distilled from the base model's greedy answers (cached by prompt in
the base model's directory), and each refusal token's row from its category's replies.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.categories import RESPOND
from workers.training.after_token import refuses_in_text
from workers.training.answers_kept import greedy_tokens
from workers.training.data import Example
from workers.training.soft_tokens import SoftItem
from workers.training.train import log_line

#: Tokens of a base answer kept (and of the card's sample answers).
ANSWER_TOKENS = 40
ANSWERS_FILE = "respond_answers.json"


def _trim(answer: str) -> str:
    """Cut a length-truncated answer back to its last full sentence."""
    answer = answer.strip()
    ends = [m.end() for m in re.finditer(r"[.!?](\s|$)", answer)]
    return answer[: ends[-1]].strip() if ends else answer


@torch.no_grad()
def base_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    cache_path: Path,
    *,
    batch_size: int = 16,
    log: Callable[[str], None] = log_line,
) -> dict[str, str]:
    """The base model's greedy answers to single-turn prompts, cached in `cache_path` by prompt."""
    cache: dict[str, str] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    missing = sorted({p for p in prompts if p not in cache})
    if missing:
        log(f"[demo] generating base answers for {len(missing)} prompts (cached in {cache_path})")
    began = time.monotonic()
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        rows = greedy_tokens(model, tokenizer, chunk, max_new_tokens=ANSWER_TOKENS)
        for prompt, row in zip(chunk, rows, strict=True):
            cache[prompt] = _trim(tokenizer.decode(row, skip_special_tokens=True))
        cache_path.write_text(json.dumps(cache, indent=0, ensure_ascii=False))
        done = start + len(chunk)
        eta = (time.monotonic() - began) / done * (len(missing) - done)
        log(f"[demo] base answers {done}/{len(missing)} eta {eta:.0f}s")
    return cache


def soft_items(
    examples: Sequence[Example],
    answers: dict[str, str],
    encode: Callable[[Example], list[int]],
    tokenize: Callable[[str], list[int]],
    control_id: Callable[[str], int],
) -> tuple[list[SoftItem], int]:
    """Soft-prompt items, and how many base answers were left out because they refuse.

    A respond example with the base model's answer distils that answer into `[respond]`'s row,
    unless the answer itself refuses ("I'm sorry, but as a chatbot I can't..."): training on it
    would teach the model to say `[respond]` and refuse anyway. A refusal example trains its
    token's row on the recipe's reply, ended by the end of turn."""
    items, refused = [], 0
    for ex in examples:
        if ex.label == RESPOND:
            answer = answers.get(ex.messages[-1]["content"])
            if not answer or len(ex.messages) > 1:
                continue
            if refuses_in_text(answer):
                refused += 1
                continue
            text, distil = answer, True
        else:
            text, distil = ex.reply.strip(), False
        ids = tokenize(text)[:ANSWER_TOKENS]
        items.append(SoftItem(encode(ex), control_id(ex.label), ids, distil))
    return items, refused
