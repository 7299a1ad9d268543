"""What the API process does once at start, before it serves."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient
from sqlalchemy.pool import QueuePool

from api.app import create_app
from core.settings import Settings


def test_start_up_objects_are_frozen(client: TestClient) -> None:
    # Full collections would walk them in the middle of requests (`core/gc_freeze.py`).
    assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() > 0


def test_the_database_pool_keeps_the_configured_connections(api_settings: Settings) -> None:
    # Too small a pool opened and closed a connection for every fifth request at 32 clients.
    app = create_app(api_settings.model_copy(update={"db_pool_size": 7}))
    engine = app.state.session_factory.kw["bind"]
    try:
        assert isinstance(engine.pool, QueuePool) and engine.pool.size() == 7
    finally:
        engine.dispose()
