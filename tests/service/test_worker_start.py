"""A worker whose model cannot be loaded stops at start with the reason, not at a first request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.settings import PROJECT_ROOT
from tests import servers


def test_worker_with_a_missing_model_exits_at_start(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        RCS_MODEL_DIR=str(tmp_path / "no-model"),
        RCS_DATA_DIR=str(tmp_path),
        REDIS_URL=servers.redis_url(12),
        RCS_LOG_FORMAT="text",
    )
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool", "solo"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "cannot load the model" in done.stdout + done.stderr
