"""Start children in order, restart any that dies (with backoff, logged and counted), stop all in
reverse order. Runs in the main thread of `rcs serve`; its state goes to the run-state file."""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from embedded.errors import StartupError
from embedded.state import DOWN, STARTING, UP, PartState, RunState

log = logging.getLogger("rcs.supervisor")
PR_SET_PDEATHSIG = 1
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
#: A child that stayed up this long is healthy again: its next failure restarts it at once.
STABLE_SECONDS = 60.0
POLL_SECONDS = 0.2


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    user: pwd.struct_passwd | None = None
    #: None: the child writes to the supervisor's own stdout and stderr.
    log_path: Path | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 60.0
    #: Runs after the child died and before it is started again (the worker's redelivery).
    on_exit: Callable[[], None] | None = None
    #: Runs once a restarted child is ready again (Redis: requeue what a broken link stranded).
    on_restarted: Callable[[], None] | None = None


@dataclass
class Child:
    spec: ChildSpec
    state: PartState = field(default_factory=PartState)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF_SECONDS
    restart_at: float | None = None
    log_handle: IO[bytes] | None = None


def _child_setup(user: pwd.struct_passwd | None) -> Callable[[], None]:
    """In the forked child: drop to `user`, then die with the supervisor (even if it is killed)."""

    def setup() -> None:
        os.setsid()
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        # After setuid: a change of credentials clears the parent-death signal.
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


class Supervisor:
    def __init__(self, state: RunState, state_file: Path) -> None:
        self.state = state
        self.state_file = state_file
        self.children: list[Child] = []
        self.stopping = False

    # -- starting ---------------------------------------------------------------------------
    def start(self, spec: ChildSpec, *, wait: bool = True) -> Child:
        child = Child(spec)
        self.children.append(child)
        self.state.parts[spec.name] = child.state
        self._spawn(child)
        if wait and spec.ready is not None:
            self._wait_ready(child)
        return child

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        if spec.log_path is not None and child.log_handle is None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            child.log_handle = spec.log_path.open("ab")
        child.process = subprocess.Popen(
            spec.argv,
            env=spec.env,
            stdout=child.log_handle,
            stderr=subprocess.STDOUT if child.log_handle else None,
            stdin=subprocess.DEVNULL,
            # The supervisor runs no threads, so a pre-exec function is safe here.
            preexec_fn=_child_setup(spec.user),
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        child.state.pid = child.process.pid
        child.state.status = UP if spec.ready is None else STARTING
        self._save()

    def _wait_ready(self, child: Child) -> None:
        assert child.spec.ready is not None and child.process is not None
        deadline = time.monotonic() + child.spec.ready_timeout
        while not child.spec.ready():
            code = child.process.poll()
            if code is not None:
                raise StartupError(
                    f"{child.spec.name} exited with code {code} at start{self._see(child)}"
                )
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{child.spec.name} not ready after {child.spec.ready_timeout:.0f} s{self._see(child)}"
                )
            time.sleep(0.05)
        child.state.status = UP
        self._save()

    @staticmethod
    def _see(child: Child) -> str:
        return f" (see {child.spec.log_path})" if child.spec.log_path else ""

    # -- watching ---------------------------------------------------------------------------
    def watch(self) -> None:
        """Until `stopping`: restart children that died, mark restarted ones up when ready."""
        while not self.stopping:
            self.check_once()
            time.sleep(POLL_SECONDS)

    def check_once(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if self.stopping:
                return
            process = child.process
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child)
                continue
            if process is None:
                continue
            code = process.poll()
            if code is None:
                if child.state.status == STARTING and child.spec.ready and child.spec.ready():
                    self._up_again(child, process.pid)
                continue
            self._died(child, code, now)

    def _up_again(self, child: Child, pid: int) -> None:
        if child.spec.on_restarted is not None:
            try:
                child.spec.on_restarted()
            except Exception as exc:  # ready a moment ago; the next poll tries again
                log.warning("%s: after restart: %s; retrying", child.spec.name, exc)
                return
        child.state.status = UP
        log.info("%s is up again (pid %d)", child.spec.name, pid)
        self._save()

    def _died(self, child: Child, code: int, now: float) -> None:
        if now - child.started_at > STABLE_SECONDS:
            child.backoff = FIRST_BACKOFF_SECONDS
        child.state.status = DOWN
        child.state.last_exit = code
        child.state.pid = None
        child.restart_at = now + child.backoff
        log.warning(
            "%s exited with code %s; restarting in %.1f s (restart %d)",
            child.spec.name,
            code,
            child.backoff,
            child.state.restarts + 1,
        )
        child.backoff = min(MAX_BACKOFF_SECONDS, child.backoff * 2)
        self._save()

    def _restart(self, child: Child) -> None:
        if child.spec.on_exit is not None:
            try:
                child.spec.on_exit()
            except Exception as exc:  # the hook may need a server that is itself down: retry
                log.warning("%s: before restart: %s; retrying", child.spec.name, exc)
                child.restart_at = time.monotonic() + child.backoff
                return
        child.state.restarts += 1
        try:
            self._spawn(child)
        except OSError as exc:
            log.error("%s could not be started: %s", child.spec.name, exc)
            child.restart_at = time.monotonic() + child.backoff
            return
        log.warning("%s restarted (pid %d)", child.spec.name, child.state.pid)

    # -- stopping ---------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop every child, last started first, each with its own signal and timeout."""
        self.stopping = True
        for child in reversed(self.children):
            process = child.process
            if process is not None and process.poll() is None:
                log.info("stopping %s (pid %d)", child.spec.name, process.pid)
                process.send_signal(child.spec.stop_signal)
                try:
                    process.wait(timeout=child.spec.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "%s did not stop in %.0f s: killed",
                        child.spec.name,
                        child.spec.stop_timeout,
                    )
                    process.kill()
                    process.wait()
            child.state.status = DOWN
            child.state.pid = None
            if child.log_handle is not None:
                child.log_handle.close()
        self._save()

    def _save(self) -> None:
        self.state.write(self.state_file)
