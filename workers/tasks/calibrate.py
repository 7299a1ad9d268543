"""The `calibrate` task: prefill-only scoring of a run's prompts, then solve and propose.

Pages of items stream from the database through the engine's scorer and back, with progress
committed per page; a redelivered run resumes with the items that have no summary yet.
"""

from __future__ import annotations

import logging
import uuid

from core.queue import CALIBRATE_TASK
from db.repositories import calibrations as runs
from db.session import session_scope
from services.calibrations import finish_run
from workers.celery_app import app
from workers.runtime import engine, session_factory

log = logging.getLogger(__name__)
PAGE_SIZE = 256


def _score_pages(run_id: uuid.UUID) -> None:
    from workers.engine.scoring import ScoreItem, score_prompts

    lm = engine().loaded
    factory = session_factory()
    with factory() as reader:
        for page in runs.iter_item_pages(
            session=reader, run_id=run_id, page_size=PAGE_SIZE, missing_summary=True
        ):
            items = [ScoreItem(prompt=item.prompt, key=item.idx) for item in page]
            scored = {s.key: s.summary.as_row() for s in score_prompts(lm, items, window=PAGE_SIZE)}
            with session_scope(factory) as session:
                runs.store_summaries(session=session, run_id=run_id, summaries=scored)
                done = runs.count_scored(session=session, run_id=run_id)
                if not runs.update_progress(session=session, run_id=run_id, done=done):
                    raise RuntimeError("run was cancelled")
            reader.expire_all()


@app.task(name=CALIBRATE_TASK, acks_late=True, ignore_result=True)
def calibrate(run_id: str) -> None:
    rid = uuid.UUID(run_id)
    factory = session_factory()
    with session_scope(factory) as session:
        run = runs.load_run(session=session, run_id=rid)
        if run.status not in ("queued", "running"):
            return
        runs.mark_run_running(session=session, run_id=rid)
    try:
        _score_pages(rid)
        with session_scope(factory) as session:
            version = finish_run(session=session, run_id=rid)
        log.info("calibration %s done: proposed version %s", rid, version.version)
    except Exception as exc:
        log.exception("calibration %s failed", rid)
        with session_scope(factory) as session:
            runs.mark_run_failed(session=session, run_id=rid, error=f"{type(exc).__name__}: {exc}")
