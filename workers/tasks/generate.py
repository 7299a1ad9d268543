"""The `generate` task: one queued generation, decoded in the worker's continuous batch.

The worker runs Celery's thread pool (`worker_pool = "threads"`, one consumer thread per
request it holds). A task claims its row, hands the request to the process's single
`EngineLoop` (which admits it between decode steps, fairly across tenants, and decodes it
alongside every other running row), waits for the row's result, writes the row and its
statistics in one transaction, then notifies waiters through Redis and returns. With `acks_late`
the message is acknowledged only after that, so a worker killed at any moment leaves it to be
redelivered; the `mark_succeeded` guard makes a redelivered row count once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from celery.signals import worker_init

from core.categories import CATEGORIES
from core.histogram import HISTOGRAM_BINS, bin_index, logodds
from core.policy import parse_rules
from core.queue import GENERATE_TASK
from core.settings import get_settings
from db.models import Generation, Tenant
from db.repositories import generations as repo
from db.repositories.policies import load_version
from db.repositories.stats import StatIncrement, floor_to_bucket, increment_stats
from db.session import session_scope
from db.types import utcnow
from services.generation_events import publish_final
from workers.celery_app import app
from workers.metrics import observe_batch, observe_failure
from workers.runtime import engine, engine_loop, redis_client, session_factory, token_stream
from workers.tasks.summaries import summary_json

log = logging.getLogger(__name__)
_settings = get_settings()
_policy_cache: dict[uuid.UUID, Any] = {}
_share_cache: dict[uuid.UUID, tuple[float, float]] = {}
#: A tenant's admission share is re-read this often (seconds).
SHARE_CACHE_SECONDS = 30.0


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


def _tenant_share(session: Any, tenant_id: uuid.UUID) -> float:
    """The tenant's weight in fair admission: `quotas["share"]`, default 1 (equal shares)."""
    cached = _share_cache.get(tenant_id)
    if cached is not None and time.monotonic() - cached[1] < SHARE_CACHE_SECONDS:
        return cached[0]
    tenant = session.get(Tenant, tenant_id)
    share = float((tenant.quotas or {}).get("share", 1.0)) if tenant is not None else 1.0
    share = share if share > 0 else 1.0
    _share_cache[tenant_id] = (share, time.monotonic())
    return share


def _claim(generation_id: uuid.UUID) -> tuple[Generation, Any, float] | None:
    """The row if still to do (queued, or running after a lost worker), its engine request and
    its tenant's share. A row the model cannot take (prompt plus budget over its context) fails
    at once and None is returned."""
    from workers.engine.batch import RequestTooLong

    with session_scope(session_factory()) as session:
        found = repo.load_generations(session=session, generation_ids=[generation_id])
        row = found[0] if found else None
        if row is None or row.status not in ("queued", "running"):
            return None
        request = _engine_request(session, row)
        try:
            engine().check(request)
        except RequestTooLong as exc:
            repo.mark_failed(session=session, generation_id=row.id, error=str(exc))
            row = None
        else:
            repo.mark_running(session=session, generation_id=row.id)
            session.refresh(row)  # the guarded UPDATE expired it; reload before the session ends
            share = _tenant_share(session, row.tenant_id)
    if row is None:
        publish_final(
            redis_client(), generation_id, streamed=True, ttl=_settings.stream_ttl_seconds
        )
        return None
    return row, request, share


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


@app.task(name=GENERATE_TASK, acks_late=True, ignore_result=True)
def generate(generation_id: str, stream: bool = False) -> None:
    gid = uuid.UUID(str(generation_id))
    claimed = _claim(gid)
    if claimed is None:
        return
    row, request, share = claimed
    loop = engine_loop()
    try:
        future = loop.submit(
            request, tenant=row.tenant_id, share=share, stream_to=str(gid) if stream else None
        )
        result = future.result()
        written = _record([row], [result])
    except Exception as exc:  # the row must say why, not stay running forever
        log.exception("generation %s failed", gid)
        _fail([gid], f"{type(exc).__name__}: {exc}")
        observe_failure([row], f"{type(exc).__name__}: {exc}")
        publish_final(redis_client(), gid, streamed=stream, ttl=_settings.stream_ttl_seconds)
        return
    if stream:
        token_stream().flush()  # the row's last text goes out before its `final`
    publish_final(redis_client(), gid, streamed=stream, ttl=_settings.stream_ttl_seconds)
    observe_batch([row], [result], batch_rows=result.batch_rows)
    log.info(
        "generation %s written=%d: %d tokens, decoded in a batch of up to %d rows",
        gid,
        written,
        result.completion_tokens,
        result.batch_rows,
        extra={"request_id": row.request_id},
    )


@worker_init.connect
def _load_engine_at_start(**_: Any) -> None:
    """A missing or inconsistent model fails the worker at start, not at the first request."""
    if _settings.preload_model:
        try:
            engine_loop()
        except Exception as exc:
            # Celery logs and swallows exceptions from signal handlers; SystemExit stops the worker.
            log.critical("cannot load the model: %s", exc)
            raise SystemExit(f"cannot load the model: {exc}") from exc
