"""The auto-tuner running in a real Celery worker process, fed drifting traffic.

Traffic is simulated as first-token summaries (p_safety drawn from a logistic distribution whose
centre shifts twice); each round refuses the requests at or above the active threshold and
writes them into `generations` as the generate task does (succeeded rows with their summary,
under the version that served them), and then sends the real `rcs.autotune` task to a worker,
which replays the active rules over the window's summaries read back from PostgreSQL. The clock
is simulated, so a loaded machine cannot age the traffic: round k's requests are created over
[T0 + 15k s, T0 + 15(k+1) s) and the task is asked for the window ending at T0 + 15(k+1) s;
the 60 s window then holds the last 4 rounds, one per slice of the drift check. Claim
checked: after each shift the achieved rate is back within hysteresis + sampling noise of the
target within 3 rounds (the first-wave tuner, 0.08 of threshold per round, needed 10 for the
largest shift, 0.6 of threshold), and the threshold then stops moving (no oscillation).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from celery import Celery
from sqlalchemy import insert
from sqlalchemy.orm import Session

from core.policy import parse_rules
from core.queue import AUTOTUNE_TASK, celery_config
from core.settings import Settings
from db.models import Generation
from db.repositories.policies import create_policy, get_policy
from db.session import create_session_factory, session_scope
from tests.api.conftest import TEST_BROKER, TEST_SECRET, TenantKeys
from tests.core.autotune_traffic import safety_scores
from tests.worker_process import flush_broker, start_worker, stop_worker, worker_env

pytestmark = pytest.mark.integration

TARGET = 0.30
HYSTERESIS = 0.03
REQUESTS_PER_ROUND = 2000
ROUND = timedelta(seconds=15)
#: The simulated clock's start: traffic in the past, apart from every other test's.
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ROUNDS_TO_SETTLE = 3
# (rounds, centre of the log-odds of p_safety): traffic gets riskier, then much safer.
PHASES = ((14, -1.0), (14, 0.8), (14, -2.0))


@pytest.fixture(scope="module")
def tuner_worker(
    api_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    flush_broker(TEST_BROKER)
    env = worker_env(
        database_url=api_settings.sqlalchemy_url,
        broker_url=TEST_BROKER,
        data_dir=tmp_path_factory.mktemp("tuner"),
        secret=TEST_SECRET,
        RCS_AUTOTUNE_MIN_SAMPLES="500",
        RCS_AUTOTUNE_MAX_RATE_STEP="0.25",
        RCS_AUTOTUNE_HYSTERESIS=str(HYSTERESIS),
        RCS_AUTOTUNE_WINDOW_SECONDS="60",
        needs_model=False,
        RCS_PRELOAD_MODEL="false",
    )
    log = tmp_path_factory.mktemp("tuner-log") / "worker.log"
    proc = start_worker(env, log, name="tuner", queues="maintenance")
    yield log
    stop_worker(proc)


def _run_tuner(client: Celery, log: Path, until: datetime) -> None:
    task_id = client.send_task(AUTOTUNE_TASK, kwargs={"until": until.isoformat()}).id
    deadline = time.monotonic() + 120
    while f"auto-tune round {task_id} done" not in (text := log.read_text(errors="replace")):
        assert f"{task_id}] raised" not in text and time.monotonic() < deadline, text[-3000:]
        time.sleep(0.1)


def _write_round(
    session: Session,
    tenant_id: uuid.UUID,
    version_id: uuid.UUID,
    logodds: np.ndarray,
    threshold: float,
    start: datetime,
) -> np.ndarray:
    """One round of served requests, created evenly over [start, start + ROUND); returns which
    were refused."""
    refused = 1 / (1 + np.exp(-logodds)) >= threshold
    offsets = np.linspace(0.0, ROUND.total_seconds(), len(logodds), endpoint=False)
    rows = safety_scores(logodds).to_rows()
    session.execute(
        insert(Generation),
        [
            {
                "tenant_id": tenant_id,
                "policy_version_id": version_id,
                "model": "tiny",
                "messages": "simulated",
                "params": {"temperature": 0.0},
                "status": "succeeded",
                "refused": bool(refused[i]),
                "refusal_category": "safety" if refused[i] else None,
                "summary": rows[i],
                "created_at": start + timedelta(seconds=float(offsets[i])),
            }
            for i in range(len(logodds))
        ],
    )
    return refused


def test_auto_tuner_in_a_worker_returns_drifting_traffic_to_target(
    api_settings: Settings, tuner_worker: Path, tenant_a: TenantKeys
) -> None:
    factory = create_session_factory(api_settings.sqlalchemy_url)
    rules = {
        "mode": "threshold",
        "categories": {
            "safety": {
                "threshold": 0.5,
                "target_rate": TARGET,
                "auto_tune": True,
                "min_threshold": 0.05,
                "max_threshold": 0.95,
            }
        },
    }
    with session_scope(factory) as session:
        policy_id = create_policy(
            session=session,
            tenant_id=tenant_a.tenant_id,
            name="tuned",
            rules=parse_rules(rules),
            actor="test",
        ).id
    client = Celery("tuner-test")
    client.conf.update(celery_config(api_settings.model_copy(update={"broker_url": TEST_BROKER})))
    rng = np.random.default_rng(11)
    clock = T0
    history: list[tuple[int, float, float]] = []  # (phase, threshold, achieved rate)
    for phase, (rounds, centre) in enumerate(PHASES):
        for _ in range(rounds):
            with session_scope(factory) as session:
                version = get_policy(
                    session=session, tenant_id=tenant_a.tenant_id, policy_id=policy_id
                ).active_version
                assert version is not None
                threshold = version.rules.rule("safety").threshold
                logodds = rng.logistic(centre, 1.0, REQUESTS_PER_ROUND)
                refused = _write_round(
                    session, tenant_a.tenant_id, version.id, logodds, threshold, clock
                )
            history.append((phase, threshold, float(refused.mean())))
            clock += ROUND
            _run_tuner(client, tuner_worker, until=clock)

    print("\nround phase threshold achieved")
    for i, (phase, threshold, rate) in enumerate(history):
        print(f"{i:5d} {phase:5d} {threshold:9.4f} {rate:8.3f}")
    noise = 3 * np.sqrt(TARGET * (1 - TARGET) / REQUESTS_PER_ROUND)
    for phase in range(len(PHASES)):
        rounds = [(t, r) for ph, t, r in history if ph == phase]
        settled = rounds[ROUNDS_TO_SETTLE:]
        assert settled, "each phase must last longer than the settling time"
        for _threshold, rate in settled:
            assert abs(rate - TARGET) <= HYSTERESIS + noise, (phase, history)
        steps = np.diff([t for t, _ in settled])
        moves = steps[np.abs(steps) > 1e-12]
        assert (np.diff(np.sign(moves)) != 0).sum() <= 1, f"threshold oscillates: {history}"
    # The shifts were real: without the tuner the first threshold would be far off target later.
    assert abs(history[len(history) - 1][1] - history[0][1]) > 0.05
