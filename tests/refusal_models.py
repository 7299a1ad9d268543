"""Small random-init models with refusal tokens of other layouts, for `rcs model register` tests.

Not trained: the service only needs real first-step logits to steer, and a random model gives
them. The tokenizer is a byte-level BPE trained offline on a few sentences, with the layout's
tokens added as special tokens (matched verbatim, leading space included).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from workers.training.register import LAYOUTS
from workers.training.tiny import small_llama
from workers.training.tokenizer import train_tiny_tokenizer

PAPER_TOKENS = tuple(LAYOUTS["paper"].values())
SINGLE_TOKENS = ("[refuse]", "[respond]")
TEXTS = (
    "what is the capital of france? paris is the capital of france.",
    "how do i boil an egg? put it in boiling water for eight minutes.",
    "write a short poem about the sea, the waves and the wind.",
    "name three primary colours: red, yellow and blue.",
)


def build_random_model(out_dir: Path, tokens: tuple[str, ...], *, seed: int = 0) -> Path:
    """A 1-layer Llama (hidden 32) whose tokenizer holds `tokens` as single special tokens."""
    torch.manual_seed(seed)
    tokenizer = train_tiny_tokenizer(TEXTS * 8, vocab_size=400)
    tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)})
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids = {"bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = small_llama(len(tokenizer), hidden=32, layers=1, heads=2, eos_token_id=eot, **ids)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = eot
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
