"""The engine loop in a child process: the same rows as the loop in a thread, a streamed row's
tokens written before its result, a too-long request failed alone, and each process gone when
the other dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.settings import get_settings
from services.generation_events import GenerationEvent, stream_key
from tests import servers
from workers.engine.batch import Engine
from workers.engine.loop import EngineLoop
from workers.engine.process import ENGINE_DIED_EXIT, EngineProcess
from workers.engine.types import GenerationRequest, RequestTooLong, SamplingParams

from .prompts import PROMPTS

STREAMS = servers.redis_url(4)


@pytest.fixture(scope="module")
def engine_process(tiny_model_dir: Path) -> Iterator[EngineProcess]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RCS_MODEL_DIR", str(tiny_model_dir))
        env.setenv("REDIS_URL", STREAMS)
        env.setenv("RCS_MAX_BATCH_SIZE", "8")
        get_settings.cache_clear()
        process = EngineProcess(start_timeout=120)
    get_settings.cache_clear()
    yield process
    process.close()


def _requests() -> list[GenerationRequest]:
    return [
        GenerationRequest(PROMPTS[i % len(PROMPTS)], sampling=SamplingParams(max_new_tokens=n))
        for i, n in enumerate((4, 12, 7, 16, 3, 9, 12, 5, 10, 8))
    ]


def test_rows_come_back_as_the_loop_in_a_thread_makes_them(
    engine_process: EngineProcess, engine: Engine
) -> None:
    requests = _requests()
    loop = EngineLoop(engine, max_rows=8, max_kv_tokens=32_768)
    try:
        alone = [f.result(60) for f in [loop.submit(r) for r in requests]]
    finally:
        loop.close()
    futures = [engine_process.submit(r, tenant=f"t{i % 3}") for i, r in enumerate(requests)]
    apart = [f.result(60) for f in futures]
    assert [r.token_ids for r in apart] == [r.token_ids for r in alone]
    for a, b in zip(apart, alone, strict=True):  # other batches sum in another order
        assert a.summary.probabilities == pytest.approx(b.summary.probabilities, rel=1e-4)
    assert [r.text for r in apart] == [r.text for r in alone]


def test_a_streamed_rows_tokens_are_written_before_its_result(
    engine_process: EngineProcess,
) -> None:
    name = str(uuid.uuid4())
    client = redis.Redis.from_url(STREAMS)
    result = engine_process.submit(
        GenerationRequest(PROMPTS[0], sampling=SamplingParams(max_new_tokens=12)), stream_to=name
    ).result(60)
    events = [GenerationEvent.from_fields(f) for _, f in client.xrange(stream_key(name))]
    assert events[0].type == "decision"
    assert "".join(e.text for e in events if e.type == "text") == result.text


def test_a_request_too_long_fails_alone(engine_process: EngineProcess) -> None:
    long = GenerationRequest("word " * 5000, sampling=SamplingParams(max_new_tokens=4))
    short = GenerationRequest(PROMPTS[1], sampling=SamplingParams(max_new_tokens=4))
    failing, passing = engine_process.submit(long), engine_process.submit(short)
    with pytest.raises(RequestTooLong, match="exceeds the model's context"):
        failing.result(60)
    assert passing.result(60).completion_tokens >= 1


def _start_parent(tiny_model_dir: Path, then: str) -> subprocess.Popen[str]:
    """A process holding an `EngineProcess`: it prints its child's pid, then runs `then`."""
    script = textwrap.dedent(f"""
        import sys, time
        from workers.engine.process import EngineProcess
        process = EngineProcess(start_timeout=120)
        print(process.pid, flush=True)
        {then}
    """)
    env = {**os.environ, "RCS_MODEL_DIR": str(tiny_model_dir), "REDIS_URL": STREAMS}
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )


def _gone(pid: int, timeout: float) -> bool:
    """The process has exited (a zombie that nobody reaps yet counts: it runs nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_the_parent_exits_when_its_engine_process_dies(tiny_model_dir: Path) -> None:
    parent = _start_parent(tiny_model_dir, "time.sleep(120)")
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, signal.SIGKILL)
        assert parent.wait(30) == ENGINE_DIED_EXIT
    finally:
        parent.kill()


def test_the_engine_process_outlives_signals_and_exits_with_its_parent(
    tiny_model_dir: Path,
) -> None:
    parent = _start_parent(tiny_model_dir, "time.sleep(120)")
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, signal.SIGTERM)  # for its parent: Ctrl-C and stops reach the whole group
    assert not _gone(child, 1.0)
    parent.kill()
    parent.wait(10)
    # Not our child: it is reparented, and gone once it sees the pipe closed.
    assert _gone(child, 30)
