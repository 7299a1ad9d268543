"""The `generate` task: a batch of queued generations from any tenants, one engine call.

celery-batches gathers up to `max_batch_size` messages within `batch_flush_ms`. With
`acks_late` the messages are acknowledged only after the batch returns, so a worker killed
mid-batch leaves them to be redelivered; rows and statistics are written in one transaction
whose `mark_succeeded` guard makes a redelivered row count once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from celery.signals import worker_init
from celery_batches import Batches, SimpleRequest

from core.categories import CATEGORIES
from core.histogram import HISTOGRAM_BINS, bin_index, logodds
from core.policy import parse_rules
from core.queue import GENERATE_TASK, INPUT_TOO_LONG
from core.settings import get_settings
from db.models import Generation
from db.repositories import generations as repo
from db.repositories.policies import load_version
from db.repositories.stats import StatIncrement, floor_to_bucket, increment_stats
from db.session import session_scope
from db.types import utcnow
from workers.celery_app import app
from workers.metrics import observe_batch, observe_failure
from workers.runtime import engine, session_factory
from workers.tasks.summaries import summary_json

log = logging.getLogger(__name__)
_settings = get_settings()
_policy_cache: dict[uuid.UUID, Any] = {}


def _row_policy(session: Any, version_id: uuid.UUID) -> Any:
    """The engine policy of a version, cached by id (versions are immutable)."""
    from workers.engine.types import RowPolicy

    cached = _policy_cache.get(version_id)
    if cached is None:
        version = load_version(session=session, version_id=version_id)
        cached = RowPolicy.from_rules(
            parse_rules({"mode": version.mode, "categories": version.rules["categories"]})
        )
        _policy_cache[version_id] = cached
    return cached


def _engine_request(session: Any, row: Generation) -> Any:
    from workers.engine.types import GenerationRequest, SamplingParams

    params = row.params or {}
    sampling = SamplingParams(
        temperature=float(params.get("temperature", 0.0)),
        top_p=float(params.get("top_p", 1.0)),
        max_new_tokens=int(params.get("max_tokens", 64)),
        seed=params.get("seed"),
    )
    return GenerationRequest(
        prompt=row.messages,
        policy=_row_policy(session, row.policy_version_id),
        sampling=sampling,
        request_id=str(row.id),
    )


def stat_increments(rows: Sequence[Generation], results: Sequence[Any]) -> list[StatIncrement]:
    """Per row and category: one request, a refusal if emitted, p_c and its histogram bin."""
    bucket = floor_to_bucket(utcnow())
    increments = []
    for row, result in zip(rows, results, strict=True):
        p = np.asarray(result.summary.probabilities, dtype=np.float64)
        bins = bin_index(logodds(p))
        for c, name in enumerate(CATEGORIES):
            histogram = [0] * HISTOGRAM_BINS
            histogram[int(bins[c])] = 1
            increments.append(
                StatIncrement(
                    tenant_id=row.tenant_id,
                    policy_version_id=row.policy_version_id,
                    category=name,
                    bucket_start=bucket,
                    requests=1,
                    refusals=int(result.decision == c),
                    sum_p=float(p[c]),
                    histogram=histogram,
                )
            )
    return increments


def _claim(ids: list[uuid.UUID]) -> tuple[list[Generation], list[Any]]:
    """Rows still to do (queued, or running after a lost worker) and their engine requests.

    A row the model cannot take (prompt plus budget over its context) fails alone, at once.
    """
    from workers.engine.batch import RequestTooLong

    rows, requests = [], []
    with session_scope(session_factory()) as session:
        pending = repo.load_generations(session=session, generation_ids=ids)
        for row in pending:
            if row.status not in ("queued", "running"):
                continue
            request = _engine_request(session, row)
            try:
                engine().check(request)
            except RequestTooLong as exc:
                error = f"{INPUT_TOO_LONG}{exc}"
                repo.mark_failed(session=session, generation_id=row.id, error=error)
                continue
            repo.mark_running(session=session, generation_id=row.id)
            session.refresh(row)  # the guarded UPDATE expired it; reload before the session ends
            rows.append(row)
            requests.append(request)
    return rows, requests


def _record(rows: Sequence[Generation], results: Sequence[Any]) -> int:
    """Write every row's result and the statistics of the rows that really moved, atomically."""
    done = []
    with session_scope(session_factory()) as session:
        for row, result in zip(rows, results, strict=True):
            moved = repo.mark_succeeded(
                session=session,
                generation_id=row.id,
                output=result.text,
                refused=result.refused,
                refusal_category=result.category,
                probabilities=dict(
                    zip(CATEGORIES, map(float, result.summary.probabilities), strict=True)
                ),
                summary=summary_json(result.summary),
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
            )
            if moved:
                done.append((row, result))
        increment_stats(
            session=session, increments=stat_increments([d[0] for d in done], [d[1] for d in done])
        )
    return len(done)


def _fail(ids: Sequence[uuid.UUID], error: str) -> None:
    with session_scope(session_factory()) as session:
        for gid in ids:
            repo.mark_failed(session=session, generation_id=gid, error=error)


@app.task(
    name=GENERATE_TASK,
    base=Batches,
    flush_every=_settings.max_batch_size,
    flush_interval=_settings.batch_flush_ms / 1000,
    acks_late=True,
    ignore_result=True,
)
def generate(requests: list[SimpleRequest]) -> None:
    ids = list(dict.fromkeys(uuid.UUID(str(r.args[0])) for r in requests))
    rows, engine_requests = _claim(ids)
    if not rows:
        return
    try:
        results, stats = engine().generate(engine_requests)
        written = _record(rows, results)
    except Exception as exc:  # the rows must say why, not stay running forever
        log.exception("batch of %d failed", len(rows))
        _fail([r.id for r in rows], f"{type(exc).__name__}: {exc}")
        observe_failure(rows, f"{type(exc).__name__}: {exc}")
        return
    observe_batch(rows, results)
    log.info(
        "batch of %d rows (%d messages): %d written, %d tokens, request ids %s",
        len(rows),
        len(requests),
        written,
        stats.generated_tokens,
        [r.request_id for r in rows],
    )


@worker_init.connect
def _load_engine_at_start(**_: Any) -> None:
    """A missing or inconsistent model fails the worker at start, not at the first request."""
    if _settings.preload_model:
        try:
            engine()
        except Exception as exc:
            # Celery logs and swallows exceptions from signal handlers; SystemExit stops the worker.
            log.critical("cannot load the model: %s", exc)
            raise SystemExit(f"cannot load the model: {exc}") from exc
