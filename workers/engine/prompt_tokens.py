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
import weakref
from collections.abc import Hashable, Mapping, Sequence

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


#: Where the template's own text goes and where each message's content goes: the template
#: text's ids, or the index of the message whose content fills that place.
Layout = list[list[int] | int]
#: Layouts per tokenizer, by its template and the messages' fields other than content (their
#: roles, mostly):
#: the template renders placeholders, so the content never changes a layout, and rendering it
#: (jinja) and tokenizing its text cost more than the content's own tokens.
_LAYOUTS: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[Hashable, Layout]] = (
    weakref.WeakKeyDictionary()
)
#: Layouts kept per tokenizer (distinct role sequences seen; more are rendered every time).
MAX_LAYOUTS = 256
#: A template that reads the clock (today's date in a system line) is rendered every time.
_READS_CLOCK = re.compile(r"strftime|now\(")


def _encode(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]) -> list[int]:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        text = "\n".join(m["content"] for m in messages)
        return list(tokenizer(text, split_special_tokens=True)["input_ids"])
    key = _layout_key(template, messages) if not _READS_CLOCK.search(str(template)) else None
    kept = _LAYOUTS.setdefault(tokenizer, {})
    layout = kept.get(key) if key is not None else None
    if layout is None:
        layout = _layout(tokenizer, messages)
        if key is not None and len(kept) < MAX_LAYOUTS:
            kept[key] = layout
    ids: list[int] = []
    for piece in layout:
        ids += _text_ids(tokenizer, messages[piece]["content"]) if isinstance(piece, int) else piece
    return ids


def _layout_key(template: object, messages: Sequence[Mapping[str, str]]) -> Hashable | None:
    """The template and the messages' fields other than content, or None when one cannot be a
    key."""
    fields = tuple(tuple(sorted((k, v) for k, v in m.items() if k != "content")) for m in messages)
    key = (str(template), fields)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _layout(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]) -> Layout:
    """The template rendered with a placeholder per message's content, cut at the placeholders."""
    placeholders = [{**m, "content": f"{_OPEN}{i}{_CLOSE}"} for i, m in enumerate(messages)]
    rendered = tokenizer.apply_chat_template(
        placeholders, add_generation_prompt=True, tokenize=False
    )
    layout: Layout = []
    position = 0
    for match in _PLACEHOLDER.finditer(rendered):
        template_text = rendered[position : match.start()]
        if template_text:
            layout.append(list(tokenizer(template_text, add_special_tokens=False)["input_ids"]))
        layout.append(int(match.group(1)))
        position = match.end()
    if position < len(rendered):
        layout.append(list(tokenizer(rendered[position:], add_special_tokens=False)["input_ids"]))
    return layout
