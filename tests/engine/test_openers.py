"""Banned openers: an answer after `[respond]` may not open with the manifest's refusal openers.

Only an answer that would open with one changes; every other answer, and every refusal, is the
same tokens as without the ban. The training evaluation (model cards) answers as the engine."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.categories import RESPOND, InvalidManifest, RefusalManifest, token_for
from workers.engine.batch import Engine
from workers.engine.model import LoadedModel
from workers.engine.openers import OpenerBan
from workers.engine.types import GenerationRequest, SamplingParams
from workers.training.answers_kept import greedy_tokens
from workers.training.evaluate import sample_answers

from .prompts import PROMPTS
from .test_decision_suffix import ANSWER, SAFETY

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=7, ignore_eos=True)
SEEDED = SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=7, seed=3)


def _with(lm: LoadedModel, openers: tuple[str, ...], *, in_context: bool) -> LoadedModel:
    manifest = dataclasses.replace(
        lm.manifest, respond_in_context=in_context, respond_banned_openers=openers
    )
    return dataclasses.replace(lm, manifest=manifest)


def _requests() -> list[GenerationRequest]:
    return [
        *(GenerationRequest(p, ANSWER, GREEDY) for p in PROMPTS),
        *(GenerationRequest(p, SAFETY, GREEDY) for p in PROMPTS[:6]),
        *(GenerationRequest(p, ANSWER, SEEDED) for p in PROMPTS[:6]),
    ]


def _round_trips(lm: LoadedModel, ids: tuple[int, ...]) -> bool:
    """Does the text of `ids` encode to them again (an opener is given as text)?"""
    text = lm.tokenizer.decode(list(ids))
    return lm.tokenizer.encode(text, add_special_tokens=False) == list(ids)


def _opens(answer: tuple[int, ...], openers: list[list[int]]) -> bool:
    return any(list(answer[: len(o)]) == o for o in openers)


def test_the_ban_is_anchored_at_the_answer_start() -> None:
    ban = OpenerBan([[5, 6, 7], [9], [5, 8]])
    assert ban.depth == 3
    assert ban.banned([]) == [9]
    assert ban.banned([5]) == [8]
    assert ban.banned([5, 6]) == [7]
    assert ban.banned([6]) == [] and ban.banned([5, 6, 7]) == [] and ban.banned([1, 5]) == []
    assert OpenerBan([]).banned([]) == []
    with pytest.raises(ValueError, match="at least one token"):
        OpenerBan([[]])


@pytest.mark.parametrize("in_context", [True, False])
def test_only_answers_that_open_with_an_opener_change(lm: LoadedModel, in_context: bool) -> None:
    plain = _with(lm, (), in_context=in_context)
    before, _ = Engine(plain, max_batch_size=64).generate(_requests())
    answers = [r.token_ids[1:] for r in before[: len(PROMPTS)]]
    # the openers: an answer's first two tokens, and another answer's first token
    two = next(a[:2] for a in answers if _round_trips(lm, a[:2]))
    one = next(a[:1] for a in answers if a[0] != two[0] and _round_trips(lm, a[:1]))
    openers = [list(two), list(one)]
    texts = tuple(lm.tokenizer.decode(o) for o in openers)
    banning = _with(lm, texts, in_context=in_context)
    assert banning.opener_ban is not None
    assert banning.opener_ban.banned([]) == list(one)
    assert banning.opener_ban.banned(two[:1]) == [two[1]]
    after, _ = Engine(banning, max_batch_size=64).generate(_requests())
    changed = 0
    for b, a in zip(before, after, strict=True):
        assert a.decision == b.decision and a.summary == b.summary
        responded = b.token_ids[0] == lm.manifest.respond_id
        if not responded or (b.seed is None and not _opens(b.token_ids[1:], openers)):
            # refusals, rows that opened with an ordinary token, other greedy answers: the same
            # tokens (a sampled answer draws without the banned tokens, so its draws may differ)
            assert a.token_ids == b.token_ids
        elif b.seed is None:
            changed += 1
            assert a.token_ids[0] == b.token_ids[0] == lm.manifest.respond_id
        if responded:
            assert not _opens(a.token_ids[1:], openers)
    assert changed >= 2


@pytest.mark.parametrize("in_context", [True, False])
def test_the_training_evaluation_answers_as_the_engine(lm: LoadedModel, in_context: bool) -> None:
    # both stop at the end of turn, as served (the evaluation cuts its answers there: with
    # `ignore_eos` the engine went on past an answer that ended within the budget)
    greedy = dataclasses.replace(GREEDY, ignore_eos=False)
    plain = _with(lm, (), in_context=in_context)
    # the prompts whose first token is `[respond]` (ANSWER only forbids the refusal tokens)
    first, _ = Engine(plain).generate([GenerationRequest(p, ANSWER, greedy) for p in PROMPTS])
    respond = lm.manifest.respond_id
    prompts = [p for p, r in zip(PROMPTS, first, strict=True) if r.token_ids[0] == respond]
    answers = [r.token_ids[1:] for r in first if r.token_ids[0] == respond]
    assert len(prompts) >= 8
    texts = tuple(lm.tokenizer.decode(a[:2]) for a in answers if _round_trips(lm, a[:2]))[:3]
    assert texts
    banning = _with(lm, texts, in_context=in_context)
    served, _ = Engine(banning).generate([GenerationRequest(p, ANSWER, greedy) for p in prompts])
    if not in_context:  # answers kept are measured as served: from the prompt alone
        tokens = greedy_tokens(
            lm.model,
            lm.tokenizer,
            prompts,
            first_token=token_for(RESPOND),
            in_context=in_context,
            max_new_tokens=greedy.max_new_tokens - 1,  # the engine's budget counts `[respond]`
            batch_size=1,  # no padding: the engine's rows are each computed as alone
            ban=banning.opener_ban,
        )
        assert tokens == [list(r.token_ids[1:]) for r in served]
    answers = sample_answers(
        lm.model,
        lm.tokenizer,
        prompts,
        first_token=token_for(RESPOND),
        max_new_tokens=greedy.max_new_tokens - 1,
        manifest=banning.manifest,
    )
    for answer, result in zip(answers, served, strict=True):
        assert answer.removeprefix(token_for(RESPOND)).strip() == result.text.strip()


def test_the_manifest_keeps_its_openers_and_checks_them(lm: LoadedModel) -> None:
    manifest = dataclasses.replace(lm.manifest, respond_banned_openers=("I'm sorry", "As an AI"))
    data = json.loads(json.dumps(manifest.to_json()))
    assert data["respond_banned_openers"] == ["I'm sorry", "As an AI"]
    assert RefusalManifest.from_json(data) == manifest
    assert "respond_banned_openers" not in lm.manifest.to_json()  # absent when there are none
    for bad in ("I'm sorry", [""], [3], None):
        with pytest.raises(InvalidManifest, match="respond_banned_openers"):
            RefusalManifest.from_json({**data, "respond_banned_openers": bad})
