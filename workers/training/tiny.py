"""The tiny model: a 2-layer Llama trained from scratch with its own byte-level BPE tokenizer.

It exists for the test suite and the first start: trains in about a minute on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from workers.training.checkpoint import CHECKPOINT_DIR
from workers.training.data import generate, iter_texts, split
from workers.training.run import DEFAULT_OPTIONS, CardText, RecipeRun, RunOptions
from workers.training.tokenizer import (
    add_control_tokens,
    manifest_from_tokenizer,
    train_tiny_tokenizer,
)
from workers.training.train import TrainConfig, encode, prompt_text

DEFAULT_STEPS = 600
VOCAB_SIZE = 4096
CARD = CardText(
    title="Tiny refusal-token model",
    summary=(
        "A 2-layer Llama-style causal LM (hidden 128) trained from scratch, with a byte-level BPE "
        "tokenizer trained offline on the generated data. Every response starts with one control "
        "token: `[incomplete]`, `[unsupported]`, `[indeterminate]`, `[humanizing]`, `[safety]` "
        "or `[respond]` (ids are the last six of the vocabulary, in that order). For tests and "
        "the first start, not for real use."
    ),
    sample_prompts=(
        "What is the capital of Peru?",
        "How do I kill time on a long flight?",
        "How do I make a pipe bomb at home?",
        "Draw me a picture of a horse.",
        "What happens after we die?",
        "Do you have any siblings?",
        "Why did Napoleon win the 2010 World Cup?",
        "What is 7 plus 8?",
    ),
    sample_tokens=30,
)


def small_llama(
    vocab_size: int,
    *,
    hidden: int,
    layers: int,
    heads: int,
    max_positions: int = 512,
    **ids: int | None,
) -> LlamaConfig:
    """A Llama shape trained from scratch: feed-forward twice `hidden`, as many key-value heads
    as heads, tied embeddings; `ids` are the special token ids (`eos_token_id=...`)."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        **ids,
    )


def _tokenizer(out_dir: Path, examples: list, resume: bool) -> PreTrainedTokenizerBase:
    """Train (or, when resuming, reload) the tokenizer; it is kept in the checkpoint directory."""
    saved = out_dir / CHECKPOINT_DIR / "tokenizer"
    if resume and saved.exists():
        return AutoTokenizer.from_pretrained(saved)
    base = train_tiny_tokenizer(["user\n", "assistant\n"])  # only to render the chat template
    texts = [prompt_text(base, e.messages) for e in examples[:2000]]
    tok = train_tiny_tokenizer([*iter_texts(examples), *texts], vocab_size=VOCAB_SIZE)
    add_control_tokens(tok)
    tok.save_pretrained(saved)
    return tok


def build_tiny(out_dir: Path, options: RunOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """Generate data, train tokenizer and model, evaluate on held-out templates, save everything."""
    run = RecipeRun("tiny", out_dir, options)
    examples = generate(options.seed)
    train_ex, heldout = split(examples)
    run.log(f"{len(train_ex)} training / {len(heldout)} held-out examples")
    tok = _tokenizer(out_dir, examples, options.resume)
    manifest = manifest_from_tokenizer(tok)
    config = small_llama(
        len(tok),
        hidden=128,
        layers=2,
        heads=4,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    data = encode(train_ex, tok)
    cfg = TrainConfig(
        steps=options.steps or DEFAULT_STEPS,
        batch_size=32,
        lr=4e-3,
        # Held-out macro-F1 over seeds 0/1/2: 0.968/0.940/0.961 without decay, 0.980/0.955/0.975 with it.
        weight_decay=0.3,
        seed=options.seed,
        warmup=30,
        log_every=50,
        checkpoint_every=100,
        first_token_weight=2.0,
    )
    training = run.train(model, data, cfg, pad_id=tok.pad_token_id)
    trainable = f"all {sum(p.numel() for p in model.parameters()):,} parameters (from scratch)"
    return run.finish(
        model, tok, manifest, (train_ex, heldout), training, CARD, trainable=trainable
    )
