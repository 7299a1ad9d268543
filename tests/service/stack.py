"""`rcs serve` exactly as a user starts it, in a data dir of its own, for the embedded tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from embedded.stack import OVERRIDDEN, free_port
from embedded.state import RunState, read_state, state_path
from tests.worker_process import TINY_MODEL

RCS = str(Path(sys.executable).with_name("rcs"))


def stack_dir() -> Path:
    """A data dir PostgreSQL's own user can reach under root (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="rcs-stack-"))
    path.chmod(0o755)
    return path


class Stack:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in OVERRIDDEN}
        defaults = {"RCS_MODEL_DIR": str(TINY_MODEL), "RCS_HEARTBEAT_SECONDS": "1"}
        self.env.update({**defaults, **env})
        self.env.update(RCS_DATA_DIR=str(data_dir), RCS_ENVIRONMENT="local")
        self.env.pop("RCS_SECRET_KEY", None)
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout: float = 180) -> Stack:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [RCS, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log()
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                body = response.json()
                if response.status_code == 200:
                    return body
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"not ready after {timeout} s: {body}\n{self.log()}")

    def state(self) -> RunState:
        state = read_state(state_path(self.data_dir))
        assert state is not None, self.log()
        return state

    def pid(self, part: str) -> int:
        pid = self.state().parts[part].pid
        assert pid is not None, f"{part} has no pid: {self.state()}"
        return pid

    def kill(self, part: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pid(part)
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, part: str, restarts: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state().parts[part]
            if state.restarts >= restarts and state.status == "up":
                return
            time.sleep(0.2)
        raise AssertionError(f"{part} not restarted: {self.state()}\n{self.log()}")

    def rcs(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RCS, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def tenant_key(self, name: str, *options: str) -> str:
        """A new tenant's admin key; `options`: `rcs tenant create`'s, such as its quota."""
        created = self.rcs("tenant", "create", name, *options)
        assert created.returncode == 0, created.stderr
        return str(json.loads(created.stdout)["api_key"])

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self, tail: int | None = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:] if tail else text
