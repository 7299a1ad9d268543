"""Continuous batching on the tiny model: rows join between steps and leave when done, each
keeping its own tokens; policy messages end a refused row at once; the loop's bounds hold."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

from core.categories import CATEGORIES
from workers.engine.batch import Engine
from workers.engine.continuous import Joining, RunningBatch
from workers.engine.loop import EngineLoop
from workers.engine.types import GenerationRequest, GenerationResult, RowPolicy, SamplingParams

from .prompts import PROMPTS

C = len(CATEGORIES)
SAFETY = CATEGORIES.index("safety")
ALWAYS_SAFETY = RowPolicy("bias", (0, 0, 0, 0, 1e4))
MESSAGE = "I can't help with that; here is a safety hotline instead."


def _joining(engine: Engine, key: int, request: GenerationRequest) -> Joining:
    return Joining(key, request, engine.loaded.encode(request.prompt))


def _drain(batch: RunningBatch, results: dict[int, GenerationResult], steps: int | None = None):
    """Step `steps` times (or until empty), collecting finished rows."""
    done = 0
    while len(batch) and (steps is None or done < steps):
        for event in batch.step():
            if event.result is not None:
                results[event.key] = event.result
        done += 1


def _targets() -> list[GenerationRequest]:
    return [
        GenerationRequest(PROMPTS[3], RowPolicy("bias", (0.5, 0.0, -1.0, 0.0, 1.0))),
        GenerationRequest(PROMPTS[9], RowPolicy(), SamplingParams(0.8, 0.9, 24, seed=7)),
        GenerationRequest(PROMPTS[12], RowPolicy("threshold", threshold=(0.2,) * C)),
    ]


def _noise() -> list[GenerationRequest]:
    return [
        GenerationRequest(PROMPTS[5] * 4, RowPolicy(), SamplingParams(1.0, 1.0, 40, seed=1)),
        GenerationRequest(PROMPTS[1], RowPolicy("bias", (-math.inf,) * C), SamplingParams(0.0)),
        GenerationRequest("Hi", RowPolicy(), SamplingParams(0.5, 0.5, 6)),
    ]


def test_rows_joining_mid_decode_get_the_same_tokens_as_alone(engine: Engine) -> None:
    alone, _ = engine.generate(_targets())
    batch = RunningBatch(engine.loaded)
    results: dict[int, GenerationResult] = {}
    batch.admit([_joining(engine, 100 + i, r) for i, r in enumerate(_noise())])
    _drain(batch, results, steps=3)  # the noise rows' cache is wider and older by now
    for i, target in enumerate(_targets()):
        batch.admit([_joining(engine, i, target)])
        _drain(batch, results, steps=2)
    _drain(batch, results)
    for i, expected in enumerate(alone):
        assert results[i].token_ids == expected.token_ids
        assert results[i].text == expected.text
        assert results[i].batch_rows > 1
    assert len(batch) == 0 and batch.cache is None


def test_a_refusal_message_ends_the_row_after_its_first_token(engine: Engine) -> None:
    messages = tuple(MESSAGE if c == SAFETY else None for c in range(C))
    with_message = RowPolicy(ALWAYS_SAFETY.mode, ALWAYS_SAFETY.bias, refusal_messages=messages)
    budget = SamplingParams(max_new_tokens=32, ignore_eos=True)
    batch = RunningBatch(engine.loaded)
    events = batch.admit(
        [
            _joining(engine, 0, GenerationRequest(PROMPTS[5], with_message, budget)),
            _joining(engine, 1, GenerationRequest(PROMPTS[5], ALWAYS_SAFETY, budget)),
        ]
    )
    early = events[0].result
    assert early is not None and events[1].result is None
    assert early.refused and early.category == "safety" and early.text == MESSAGE
    assert early.completion_tokens == 1 and early.finish_reason == "stop"
    assert len(batch) == 1  # only the row that writes its own refusal decodes on
    results: dict[int, GenerationResult] = {}
    _drain(batch, results)
    assert results[1].completion_tokens == 32 and results[1].text != MESSAGE
    assert batch.counters.decode_steps == 31


def test_engine_loop_serves_concurrent_submitters_within_its_row_bound(engine: Engine) -> None:
    requests = [*_targets(), *_noise()] * 2
    alone = [engine.generate([r])[0][0] for r in requests]
    loop = EngineLoop(engine, max_rows=3, max_kv_tokens=10**6)
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = list(
                pool.map(lambda r: loop.submit(r[1], tenant=r[0] % 2), enumerate(requests))
            )
            results = [f.result(timeout=120) for f in futures]
    finally:
        loop.close()
    for request, got, expected in zip(requests, results, alone, strict=True):
        if request.sampling.temperature == 0 or request.sampling.seed is not None:
            assert got.token_ids == expected.token_ids
        assert 1 <= got.batch_rows <= 3
    assert max(r.batch_rows for r in results) > 1


def test_engine_loop_keeps_to_its_cache_token_bound(engine: Engine) -> None:
    one = GenerationRequest(PROMPTS[0], sampling=SamplingParams(max_new_tokens=20))
    need = len(engine.loaded.encode(one.prompt)) + 20
    loop = EngineLoop(engine, max_rows=8, max_kv_tokens=2 * need)  # room for two such rows
    try:
        futures = [loop.submit(one) for _ in range(6)]
        results = [f.result(timeout=120) for f in futures]
    finally:
        loop.close()
    assert all(r.batch_rows <= 2 for r in results)
    assert len({r.token_ids for r in results}) == 1


def test_rows_are_kept_for_a_tenant_under_its_share(engine: Engine) -> None:
    """With every other row taken by one tenant, the last quarter waits for someone else."""
    long = GenerationRequest(
        PROMPTS[0], sampling=SamplingParams(max_new_tokens=60, ignore_eos=True)
    )
    short = GenerationRequest(PROMPTS[1], sampling=SamplingParams(max_new_tokens=2))
    loop = EngineLoop(engine, max_rows=4, max_kv_tokens=10**6)
    try:
        loop.submit(short, tenant="quiet").result(timeout=60)  # the quiet tenant was seen
        loud = [loop.submit(long, tenant="loud") for _ in range(4)]
        deadline = time.monotonic() + 60
        while len(loop.batch) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(loop.batch) == 3 and loop.waiting == 1  # the loud tenant left a row free
        quiet = loop.submit(short, tenant="quiet").result(timeout=60)
        assert not all(f.done() for f in loud), "the quiet row waited for the loud ones"
        results = [f.result(timeout=120) for f in loud]
    finally:
        loop.close()
    assert quiet.batch_rows == 4  # it took the kept row next to three loud ones
    assert max(r.batch_rows for r in results) == 4


def _long(n: int) -> list[GenerationRequest]:
    sampling = SamplingParams(0.0, 1.0, 400, ignore_eos=True)  # running for a while
    return [GenerationRequest(PROMPTS[i], RowPolicy(), sampling) for i in range(n)]


def _short(i: int) -> GenerationRequest:
    return GenerationRequest(PROMPTS[10 + i], RowPolicy(), SamplingParams(0.0, 1.0, 4))


def _until_running(loop: EngineLoop, rows: int) -> None:
    deadline = time.monotonic() + 60
    while len(loop.batch) < rows:
        assert time.monotonic() < deadline, "the long rows never all ran"
        time.sleep(0.005)


def test_a_running_batch_gathers_joiners_before_it_admits_them(engine: Engine) -> None:
    """With half the batch to gather, one joiner waits beside two running rows (no timeout
    within the test), and joins with the second; a lone request on an idle loop runs at once."""
    loop = EngineLoop(engine, max_rows=8, max_kv_tokens=10**6, admit_fraction=1.0, admit_wait=600)
    try:
        assert loop.submit(_short(0)).result(timeout=60).text is not None  # idle: at once
        running = [loop.submit(r) for r in _long(2)]
        _until_running(loop, 2)
        first = loop.submit(_short(1))
        for _ in range(30):  # steps go on; the joiner is still gathering
            time.sleep(0.01)
            assert loop.waiting == 1 and not first.done()
        second = loop.submit(_short(2))  # two wait for two running: both join
        results = [first.result(timeout=60), second.result(timeout=60)]
        assert not any(f.done() for f in running)  # they joined a batch still decoding
        assert all(r.batch_rows == 4 for r in results)
    finally:
        loop.close()


def test_a_gathering_joiner_waits_no_longer_than_the_admission_wait(engine: Engine) -> None:
    loop = EngineLoop(engine, max_rows=8, max_kv_tokens=10**6, admit_fraction=1.0, admit_wait=0.05)
    try:
        running = [loop.submit(r) for r in _long(2)]
        _until_running(loop, 2)
        alone = loop.submit(_short(0)).result(timeout=60)
        assert not any(f.done() for f in running) and alone.batch_rows == 3
    finally:
        loop.close()
