"""Prompt token ids in which user text is only ever text.

The chat template's own markers (`<|im_start|>`, `<|im_end|>`) become special tokens, but the
same strings typed inside a message, and the refusal tokens (`[respond]`, `[safety]`, ...), are
tokenized as plain text: a caller cannot write the model's control or role tokens into its own
input. The template is rendered with a placeholder per message; the text between placeholders
is the template's and is tokenized normally, each message's content with
`split_special_tokens=True`. For content without such strings the ids are those of tokenizing
the whole rendered prompt (the pre-tokenizer splits at the same places).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

#: Private-use characters: no template changes them and no prompt is refused for holding them
#: (a message that contains one is still only text: placeholders are matched by index).
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
#: `split_special_tokens` is applied by switching a flag on the shared Rust tokenizer for the
#: call: two threads encoding at once (the worker's consumer threads) would see each other's
#: setting, and a template marker could be split. One encoding at a time.
_ENCODING = threading.Lock()


def _text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Ids of user text: special-token strings in it are split like any other text."""
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]
) -> list[int]:
    """Token ids of chat messages, through the chat template when the tokenizer has one."""
    with _ENCODING:
        return _encode(tokenizer, messages)


def _encode(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        text = "\n".join(m["content"] for m in messages)
        return list(tokenizer(text, split_special_tokens=True)["input_ids"])
    contents = [m["content"] for m in messages]
    placeholders = [{**m, "content": f"{_OPEN}{i}{_CLOSE}"} for i, m in enumerate(messages)]
    rendered = tokenizer.apply_chat_template(
        placeholders, add_generation_prompt=True, tokenize=False
    )
    ids: list[int] = []
    position = 0
    for match in _PLACEHOLDER.finditer(rendered):
        template_text = rendered[position : match.start()]
        if template_text:
            ids += tokenizer(template_text, add_special_tokens=False)["input_ids"]
        ids += _text_ids(tokenizer, contents[int(match.group(1))])
        position = match.end()
    if position < len(rendered):
        ids += tokenizer(rendered[position:], add_special_tokens=False)["input_ids"]
    return ids
