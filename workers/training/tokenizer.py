"""Tokenizers for refusal-token models: the tiny model's byte-level BPE, and the control tokens.

Control tokens are added as special tokens after all existing vocabulary, in `CATEGORIES` order
then `[respond]`, so they hold the highest ids in that order (the greedy rule's argmax
tie-breaking relies on it). The model's embedding matrix is resized to match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from core.categories import CLASSES, MANIFEST_FILENAME, RefusalManifest, token_for

END_OF_TEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
#: ChatML without a default system prompt; the generation prompt ends right before the control token.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONTROL_TOKENS: tuple[str, ...] = tuple(token_for(c) for c in CLASSES)


def train_tiny_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 1536
) -> PreTrainedTokenizerFast:
    """A lower-cased byte-level BPE trained offline on `texts`, with ChatML specials and template.

    Decoding gives lower-case words separated by single spaces (newlines are not kept): fine for
    the tiny test model, whose text only has to be plausible.
    """
    tok = Tokenizer(models.BPE())
    # Lower case, and every word gets its leading-space marker (also sentence-initial ones), so
    # "Insult" and " insult" share a token: a from-scratch model generalises across templates.
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def add_control_tokens(tokenizer: PreTrainedTokenizerBase) -> RefusalManifest:
    """Add the six control tokens after the existing vocabulary; return their manifest."""
    first_id = len(tokenizer)
    existing = [t for t in CONTROL_TOKENS if t in tokenizer.get_vocab()]
    if existing:
        raise ValueError(f"tokenizer already has control tokens {existing}")
    tokenizer.add_special_tokens({"additional_special_tokens": list(CONTROL_TOKENS)})
    ids = tokenizer.convert_tokens_to_ids(list(CONTROL_TOKENS))
    expected = list(range(first_id, first_id + len(CONTROL_TOKENS)))
    if ids != expected:
        raise RuntimeError(f"control tokens got ids {ids}, expected {expected}")
    return manifest_from_tokenizer(tokenizer)


def manifest_from_tokenizer(tokenizer: PreTrainedTokenizerBase) -> RefusalManifest:
    """The manifest of a tokenizer that already holds the control tokens."""
    ids = tokenizer.convert_tokens_to_ids(list(CONTROL_TOKENS))
    return RefusalManifest(CONTROL_TOKENS[:-1], tuple(ids[:-1]), CONTROL_TOKENS[-1], ids[-1])


def resize_for_control_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Grow the embeddings (and untied head) to the tokenizer; new rows start from the mean row."""
    old = model.get_input_embeddings().weight.shape[0]
    new = len(tokenizer)
    if new <= old:
        return
    model.resize_token_embeddings(new, mean_resizing=True)
    model.config.vocab_size = new


def write_manifest(manifest: RefusalManifest, out_dir: Path) -> Path:
    """Write `refusal_tokens.json` beside the weights."""
    path = out_dir / MANIFEST_FILENAME
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return path
