"""Refusal openers a `[respond]` answer may not start with (the manifest's
`respond_banned_openers`).

A model that says `[respond]` may still refuse in its text: the demo's base model opens about one
answer in eight with "I'm sorry for any misunderstanding, but as a chatbot ... I don't have the
capability". A manifest may list such openers; the engine then bans, in a row that responded,
the last token of an opener whose other tokens the answer opens with (as transformers'
`NoBadWordsLogitsProcessor` bans a sequence, but anchored at the answer's first token). An answer
that opens otherwise is untouched, token for token; a refusing row is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from workers.engine.processor import NEG_INF


class OpenerBan:
    """The openers as token ids: which tokens an answer that opened with `prefix` may not take."""

    def __init__(self, openers: Sequence[Sequence[int]]) -> None:
        if any(not seq for seq in openers):
            raise ValueError("an opener needs at least one token")
        self._next: dict[tuple[int, ...], list[int]] = {}
        for seq in openers:
            self._next.setdefault(tuple(seq[:-1]), []).append(seq[-1])
        #: Answers of at least this many tokens are past every opener.
        self.depth = max(len(seq) for seq in openers) if openers else 0

    @classmethod
    def from_texts(cls, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> OpenerBan:
        """Openers as the tokenizer encodes them at the start of an answer."""
        return cls([tokenizer.encode(t, add_special_tokens=False) for t in texts])

    def banned(self, answer: Sequence[int]) -> list[int]:
        """Token ids the answer (its tokens so far) may not take next."""
        if len(answer) >= self.depth:
            return []
        return self._next.get(tuple(answer), [])

    def mask(self, logits: torch.Tensor, answers: Sequence[Sequence[int] | None]) -> None:
        """Set to -inf, in place, each row's banned next tokens (`logits` (B, V); a row whose
        answer is None is not banned)."""
        for row, answer in enumerate(answers):
            ids = self.banned(answer) if answer is not None else []
            if ids:
                logits[row, ids] = NEG_INF


class BanOpenersProcessor(LogitsProcessor):
    """`OpenerBan` for `model.generate`: every row's answer starts at `answer_start` (the prompt's
    padded width, `[respond]` included when it is in context)."""

    def __init__(self, ban: OpenerBan, answer_start: int) -> None:
        self.ban = ban
        self.answer_start = answer_start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        answers = input_ids[:, self.answer_start :]
        if answers.shape[1] < self.ban.depth:
            self.ban.mask(scores, answers.tolist())
        return scores
