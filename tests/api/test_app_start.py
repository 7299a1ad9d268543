"""What the API process does once at start, before it serves."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient


def test_start_up_objects_are_frozen(client: TestClient) -> None:
    # Full collections would walk them in the middle of requests (`core/gc_freeze.py`).
    assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() > 0
