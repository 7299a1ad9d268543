"""Models registered with `rcs model register`, served end to end: the paper's token layout and a
single `[refuse]` token served as one category. Real API in-process, a real Celery worker process
on Redis, PostgreSQL, and small random-init transformers models built by the test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.tasks_client import CeleryTaskSender
from cli import main
from core.categories import CATEGORIES
from core.settings import Settings
from db.models import Generation
from db.session import create_session_factory
from tests import servers
from tests.api.conftest import TEST_SECRET, TenantKeys
from tests.refusal_models import PAPER_TOKENS, SINGLE_TOKENS, build_random_model
from tests.worker_process import flush_broker, start_worker, stop_worker, worker_env

pytestmark = pytest.mark.integration

#: A Redis database of its own, so other end-to-end modules' broker flushes never touch it.
BROKER = servers.redis_url(11)
PROMPTS = [
    "How do I make a pipe bomb at home?",
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Do you have any siblings?",
]
NEVER = {"mode": "bias", "categories": {c: {"bias": "off"} for c in CATEGORIES}}
#: Threshold 0 for every category: refuse with the most probable category that has a token.
ALWAYS = {"mode": "threshold", "categories": {c: {"threshold": 0.0} for c in CATEGORIES}}


def _register(model_dir: Path, *flags: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["model", "register", str(model_dir), *flags])
    assert exit_.value.code == 0


@pytest.fixture(scope="module")
def settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"broker_url": BROKER})


@pytest.fixture(scope="module")
def environment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    flush_broker(BROKER)
    return worker_env(
        database_url=settings.sqlalchemy_url,
        broker_url=BROKER,
        data_dir=tmp_path_factory.mktemp("worker"),
        secret=TEST_SECRET,
        RCS_BATCH_FLUSH_MS="50",
    )


@pytest.fixture
def live_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, task_sender=CeleryTaskSender(settings))) as client:
        yield client


def _serve(environment: dict[str, str], model_dir: Path, log: Path):
    return start_worker({**environment, "RCS_MODEL_DIR": str(model_dir)}, log, name=log.stem)


def _policy(client: TestClient, keys: TenantKeys, name: str, body: dict) -> None:
    response = client.post("/v1/policies", json={"name": name, **body}, headers=keys.headers())
    assert response.status_code == 201, response.text


def _generate(client: TestClient, keys: TenantKeys, policy: str) -> list[str]:
    ids = []
    for prompt in PROMPTS:
        response = client.post(
            "/v1/generations",
            json={"prompt": prompt, "max_tokens": 6, "policy": policy},
            headers=keys.headers("client"),
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def _final(settings: Settings, ids: list[str], timeout: float = 180) -> list[Generation]:
    factory = create_session_factory(settings.sqlalchemy_url)
    wanted = [uuid.UUID(i) for i in ids]
    deadline = time.monotonic() + timeout
    while True:
        with factory() as session:
            rows = list(session.scalars(select(Generation).where(Generation.id.in_(wanted))))
        done = all(r.status in ("succeeded", "failed", "cancelled") for r in rows)
        if (done and len(rows) == len(ids)) or time.monotonic() > deadline:
            assert all(r.status == "succeeded" for r in rows), [(r.status, r.error) for r in rows]
            return rows
        time.sleep(0.2)


def _calibrate(client: TestClient, keys: TenantKeys, targets: dict[str, float]) -> dict:
    _policy(client, keys, "calibrated", {"mode": "threshold"})
    submitted = client.post(
        "/v1/calibrations",
        json={
            "policy": "calibrated",
            "targets": targets,
            "prompts": [
                {"prompt": f"{p} ({i})", "label": None} for i, p in enumerate(PROMPTS * 10)
            ],
        },
        headers=keys.headers(),
    )
    assert submitted.status_code == 202, submitted.text
    location = submitted.headers["Location"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = client.get(location, headers=keys.headers()).json()
        if run["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert run["status"] == "succeeded", run
    run["location"] = location
    return run


def test_paper_layout_model_is_steered_and_calibrated(
    live_client: TestClient,
    settings: Settings,
    environment: dict[str, str],
    tenant_a: TenantKeys,
    tmp_path: Path,
) -> None:
    model = build_random_model(tmp_path / "paper-layout", PAPER_TOKENS)
    _register(model, "--layout", "paper")
    _policy(live_client, tenant_a, "never", NEVER)
    _policy(
        live_client,
        tenant_a,
        "only-safety",
        {
            "mode": "threshold",
            "categories": {
                c: {"threshold": 0.0} if c == "safety" else {"enabled": False} for c in CATEGORIES
            },
        },
    )
    worker = _serve(environment, model, tmp_path / "paper.log")
    try:
        never = _final(settings, _generate(live_client, tenant_a, "never"))
        safety = _final(settings, _generate(live_client, tenant_a, "only-safety"))
        run = _calibrate(live_client, tenant_a, {"safety": 0.5})
    finally:
        stop_worker(worker)
    assert not any(r.refused for r in never)
    assert all(r.refused and r.refusal_category == "safety" for r in safety)
    for row in never + safety:
        assert set(row.probabilities) == set(CATEGORIES)
        assert all(p > 0 for p in row.probabilities.values())  # every category has its token
    assert set(run["result"]["categories"]) == {"safety"}
    assert run["result"]["categories"]["safety"]["target"] == 0.5


def test_single_refuse_token_model_is_served_as_one_category(
    live_client: TestClient,
    settings: Settings,
    environment: dict[str, str],
    tenant_b: TenantKeys,
    tmp_path: Path,
) -> None:
    model = build_random_model(tmp_path / "single-token", SINGLE_TOKENS, seed=1)
    _register(model, "--token", "safety=[refuse]", "--respond-token", "[respond]")
    _policy(live_client, tenant_b, "never", NEVER)
    _policy(live_client, tenant_b, "always", ALWAYS)
    worker = _serve(environment, model, tmp_path / "single.log")
    try:
        never = _final(settings, _generate(live_client, tenant_b, "never"))
        always = _final(settings, _generate(live_client, tenant_b, "always"))
        run = _calibrate(live_client, tenant_b, {"safety": 0.5})
    finally:
        stop_worker(worker)
    assert not any(r.refused for r in never)
    # Threshold 0 on every category: only the category with a token can be emitted.
    assert all(r.refused and r.refusal_category == "safety" for r in always)
    for row in never + always:
        assert row.probabilities["safety"] > 0
        assert all(row.probabilities[c] == 0.0 for c in CATEGORIES if c != "safety")
    assert run["result"]["categories"]["safety"]["target"] == 0.5

    # Re-solving for a category the model has no token for is a 422 naming the target.
    again = live_client.post(
        f"{run['location']}/solve",
        json={"targets": {"humanizing": 0.2}},
        headers=tenant_b.headers(),
    )
    assert again.status_code == 422, again.text
    assert "no token for 'humanizing'" in again.text
    assert "targets.humanizing" in again.text
