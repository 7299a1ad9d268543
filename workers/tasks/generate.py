"""The `generate` and `generate_batch` tasks: queued generations (one, or the several an API
process sent in one message: `services/task_batching.py`), decoded in the worker's continuous
batch.

The worker runs Celery's thread pool (`worker_pool = "threads"`, one consumer thread per
message it holds). A task hands the process's single `EngineLoop` (which admits a request
between decode steps, fairly across tenants, and decodes it alongside every other running row)
each row whose message carries its start (`core.row_start`), claims its rows meanwhile, hands
it the claimed rows not started yet, waits for each claimed row's result, has it written with its
statistics (`RowRecorder`: one transaction for all rows finished meanwhile; a row queued while
its policy had a shadow version also counts the shadow's decision, taken from the same
first-token summary), after which waiters are notified through Redis, and returns once every
row is written. With `acks_late` the message is acknowledged only after that, so a worker
killed at any moment leaves it to be redelivered; the `mark_succeeded` guard makes a
redelivered row count once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from celery.signals import worker_init
from sqlalchemy.orm import Session

from core.categories import CATEGORIES
from core.gc_freeze import freeze_startup_objects
from core.leaks import LeakCheck
from core.queue import GENERATE_BATCH_TASK, GENERATE_TASK, INPUT_TOO_LONG
from core.row_start import QueuedRow, tenant_share
from core.sampling import SamplingParams
from core.settings import get_settings
from db.models import Generation, Tenant
from db.repositories import generations as repo
from db.repositories.generation_json import generation_from_row
from db.repositories.policies import load_version
from db.repositories.stats import increment_stats, stat_rows
from db.retry import retry_on_disconnect
from db.session import session_scope
from db.types import utcnow
from services.generation_events import publish_final
from services.task_batching import batch_rows
from workers.celery_app import app
from workers.engine.types import (
    GenerationRequest,
    GenerationResult,
    RequestTooLong,
    RowPolicy,
)
from workers.metrics import observe_batch, observe_failure, observe_leaks
from workers.row_recorder import RowRecorder
from workers.runtime import engine_loop, flush_token_stream, redis_client, session_factory
from workers.start_marks import StartMarks
from workers.tasks.row_statistics import increments_of, leak_check

if TYPE_CHECKING:
    from workers.engine.loop import EngineLoop  # imports torch: only once a row runs
    from workers.engine.process import EngineProcess

log = logging.getLogger(__name__)
_settings = get_settings()
_policy_cache: dict[uuid.UUID, RowPolicy] = {}
_share_cache: dict[uuid.UUID, tuple[float, float]] = {}
#: A tenant's admission share is re-read this often (seconds).
SHARE_CACHE_SECONDS = 30.0


def _row_policy(session: Session, version_id: uuid.UUID) -> RowPolicy:
    """The engine policy of a version, cached by id (versions are immutable)."""
    cached = _policy_cache.get(version_id)
    if cached is None:
        version = load_version(session=session, version_id=version_id)
        cached = RowPolicy.from_rules(version.rules)
        _policy_cache[version_id] = cached
    return cached


def _engine_request(row: Generation, policy: RowPolicy) -> GenerationRequest:
    return GenerationRequest(
        prompt=row.messages,
        policy=policy,
        sampling=SamplingParams.from_params(row.params or {}),
        request_id=str(row.id),
    )


def _tenant_share(session: Session, tenant_id: uuid.UUID) -> float:
    """The tenant's weight in fair admission (`core.row_start.tenant_share`)."""
    cached = _share_cache.get(tenant_id)
    if cached is not None and time.monotonic() - cached[1] < SHARE_CACHE_SECONDS:
        return cached[0]
    tenant = session.get(Tenant, tenant_id)
    share = tenant_share(tenant.quotas if tenant is not None else None)
    _share_cache[tenant_id] = (share, time.monotonic())
    return share


@dataclass(frozen=True)
class Claimed:
    """A row this worker runs (claimed, or carried by its message: `core.row_start`): its
    engine request, tenant share, whether it is streamed, and when this worker took it."""

    row: Generation
    request: GenerationRequest
    share: float
    stream: bool
    started_at: datetime

    @property
    def id(self) -> uuid.UUID:
        return self.row.id


def _claim(rows: Sequence[QueuedRow], started_at: datetime) -> list[Claimed]:
    """The rows still to do (queued, or running after a lost worker), marked running in one
    statement."""
    streamed = {row.id: row.stream for row in rows}
    with session_scope(session_factory()) as session:
        found = repo.claim_generations(session=session, generation_ids=list(streamed))
        return [
            Claimed(
                row,
                _engine_request(row, _row_policy(session, row.policy_version_id)),
                _tenant_share(session, row.tenant_id),
                streamed[row.id],
                started_at,
            )
            for row in found
        ]


def _carried(
    rows: Sequence[QueuedRow], started_at: datetime
) -> tuple[list[Claimed], list[QueuedRow]]:
    """The rows to run without a claim (`core.row_start`: carried by their message, not
    streamed, of a policy version this worker has read), each once; and the others, to claim."""
    carried: dict[uuid.UUID, Claimed] = {}
    for queued in rows:
        if queued.start is None or queued.stream or queued.id in carried:
            continue
        try:
            row = generation_from_row(queued.start.row)
        except (TypeError, ValueError):  # not a row this code reads: claim it instead
            continue
        policy = _policy_cache.get(row.policy_version_id)
        if policy is not None and row.id == queued.id:
            request = _engine_request(row, policy)
            carried[row.id] = Claimed(row, request, queued.start.share, False, started_at)
    return list(carried.values()), [r for r in rows if r.id not in carried]


def _record(
    claimed: Sequence[Claimed], results: Sequence[GenerationResult]
) -> dict[uuid.UUID, str]:
    """Write every row's result and the statistics of the rows that really moved, atomically;
    returns the rows that moved, by id, as written (JSON; a redelivered, finished row does not
    move). The statistics go in the same statement when every row moves (the usual case)."""
    checks = [leak_check(item.row, result) for item, result in zip(claimed, results, strict=True)]
    succeeded = [
        repo.Succeeded(
            generation_id=item.id,
            output=result.text,
            refused=result.refused,
            refusal_category=result.category,
            probabilities=dict(
                zip(CATEGORIES, map(float, result.summary.probabilities), strict=True)
            ),
            summary=result.summary.as_row(),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            leak=None if check is None else check.leak,
            leak_phrase=None if check is None else check.phrase,
            started_at=item.started_at,
        )
        for item, result, check in zip(claimed, results, checks, strict=True)
    ]
    first: dict[uuid.UUID, tuple[Generation, GenerationResult, LeakCheck | None]] = {}
    for item, result, check in zip(claimed, results, checks, strict=True):
        first.setdefault(item.id, (item.row, result, check))  # a row twice (redelivered): once
    with session_scope(session_factory()) as session:
        if_all_move = stat_rows(increments_of(session, list(first.values())))
        written = repo.mark_many_succeeded(session=session, rows=succeeded, stats=if_all_move)
        done = [row for gid, row in first.items() if gid in written]
        if len(done) < len(first):  # the statement counted nothing: count what moved
            increment_stats(session=session, increments=increments_of(session, done))
    observe_leaks([check for _, _, check in done])
    return written


def _notify(claimed: Sequence[Claimed], written: Mapping[uuid.UUID, object]) -> None:
    """After the commit: streamed rows' last text, then their `final` and every notification,
    carrying each row that moved as written (its waiter then need not read it)."""
    if any(c.stream for c in claimed):
        flush_token_stream()
    publish_final(
        redis_client(),
        [(c.id, c.stream) for c in claimed],
        ttl=_settings.stream_ttl_seconds,
        rows={gid: str(row) for gid, row in written.items()},
    )


def _fail(generation_id: uuid.UUID, error: str, *, stream: bool) -> None:
    with session_scope(session_factory()) as session:
        repo.mark_failed(session=session, generation_id=generation_id, error=error)
    publish_final(redis_client(), [(generation_id, stream)], ttl=_settings.stream_ttl_seconds)


@lru_cache(maxsize=1)
def recorder() -> RowRecorder[Claimed, GenerationResult]:
    # A database restart is waited out, never turned into a failed or lost row.
    return RowRecorder(lambda c, r: retry_on_disconnect(lambda: _record(c, r)), _notify)


def _give_up(item: Claimed, exc: Exception) -> None:
    """The row must say why, not stay running forever."""
    log.exception("generation %s failed", item.id, exc_info=exc)
    error = f"{type(exc).__name__}: {exc}"
    retry_on_disconnect(lambda: _fail(item.id, error, stream=item.stream))
    observe_failure([item.row], error)


@lru_cache(maxsize=1)
def start_marks() -> StartMarks:
    def mark(started: Mapping[uuid.UUID, datetime]) -> None:
        with session_scope(session_factory()) as session:
            repo.mark_started(session=session, started=started)

    return StartMarks(mark, delay=_settings.running_mark_seconds)


def _start(
    loop: EngineLoop | EngineProcess, claimed: Sequence[Claimed]
) -> dict[Future[GenerationResult], Claimed]:
    """Hand every row to the engine loop; a row too long for the model fails alone, at once
    (the model never sees it)."""
    running = {}
    for item in claimed:
        stream_to = str(item.id) if item.stream else None
        try:
            future = loop.submit(
                item.request, tenant=item.row.tenant_id, share=item.share, stream_to=stream_to
            )
        except RequestTooLong as exc:
            _too_long(item, exc)
            continue
        running[future] = item
    return running


def _too_long(item: Claimed, exc: RequestTooLong) -> None:
    """The row fails alone, saying so; the model never sees it."""
    _fail(item.id, f"{INPUT_TOO_LONG}{exc}", stream=item.stream)


def run_rows(rows: Sequence[QueuedRow]) -> None:
    """Decode and write `rows`: those carried by their message at once (`core.row_start`), the
    others once claimed. Each row is handed to the recorder as soon as the engine finishes it,
    and this returns (so the message is acknowledged) only once every row is written or
    failed."""
    loop = engine_loop()
    started_at = utcnow()
    carried, to_claim = _carried(rows, started_at)
    running = _start(loop, carried)
    start_marks().started([item.id for item in running.values()], started_at)
    if to_claim:
        claimed = retry_on_disconnect(lambda: _claim(to_claim, started_at))
        running |= _start(loop, claimed)
    recording = []
    for future in as_completed(running):
        item = running[future]
        start_marks().finished(item.id)
        try:
            result = future.result()
        except RequestTooLong as exc:  # found in an engine process, after the hand-over
            _too_long(item, exc)
            continue
        except Exception as exc:
            _give_up(item, exc)
            continue
        recording.append((item, result, recorder().record(item, result)))  # one commit for all
    for item, result, written in recording:
        try:
            moved = written.result()
        except Exception as exc:
            _give_up(item, exc)
            continue
        observe_batch([item.row], [result], batch_rows=result.batch_rows)
        log.info(
            "generation %s written=%s: %d tokens, decoded in a batch of up to %d rows%s",
            item.id,
            moved,
            result.completion_tokens,
            result.batch_rows,
            "" if item.row.status == "running" else ", not claimed",
            extra={"request_id": item.row.request_id},
        )


@app.task(name=GENERATE_TASK, acks_late=True, ignore_result=True)
def generate(generation_id: str, stream: bool = False, start: dict[str, Any] | None = None) -> None:
    run_rows([QueuedRow.from_args(generation_id, stream, start)])


@app.task(name=GENERATE_BATCH_TASK, acks_late=True, ignore_result=True)
def generate_batch(rows: list[list[Any]]) -> None:
    """Several rows in one message (`services/task_batching.py`), acknowledged once all are
    written."""
    run_rows(batch_rows(rows))


@worker_init.connect
def _load_engine_at_start(**_: object) -> None:
    """A missing or inconsistent model fails the worker at start, not at the first request."""
    if _settings.preload_model:
        try:
            engine_loop()
        except Exception as exc:
            # Celery logs and swallows exceptions from signal handlers; SystemExit stops the worker.
            log.critical("cannot load the model: %s", exc)
            raise SystemExit(f"cannot load the model: {exc}") from exc
    freeze_startup_objects()  # the model and Celery: keep them out of full collections
