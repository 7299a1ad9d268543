"""The supervisor's run state, a JSON file under the data dir read by the API and the CLI.

It holds the servers' URLs (so `rcs tenant create` finds the running database) and each part's
pid, status and restart count (so `/readyz` names a part that is down and `/metrics` counts its
restarts). Written atomically: readers never see half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "run/state.json"
UP = "up"
DOWN = "down"
STARTING = "starting"


@dataclass
class PartState:
    pid: int | None = None
    status: str = STARTING
    restarts: int = 0
    last_exit: int | None = None


@dataclass
class RunState:
    supervisor_pid: int
    database_url: str | None = None
    broker_url: str | None = None
    api_url: str | None = None
    parts: dict[str, PartState] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        os.replace(temporary, path)


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def read_state(path: Path) -> RunState | None:
    """The state a live supervisor wrote, or None (no file, unreadable, or its writer is gone)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    parts = {name: PartState(**part) for name, part in raw.pop("parts", {}).items()}
    state = RunState(**raw, parts=parts)
    return state if _alive(state.supervisor_pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
