"""The engine loop in a child process of its own, so its Python does not wait for the GIL that
the worker's consumer threads, row recorder and Celery's own loop hold (vLLM V1 splits its
engine core from the front end the same way).

`EngineProcess` offers `EngineLoop.submit`: the request goes down a pipe, the child's loop
decodes it in its continuous batch (and streams its tokens to Redis itself), and the result comes
back up the pipe to resolve the `Future`. A streamed row's result is sent only after its tokens
are written, so the task's `final` entry still comes after the last text. Faults: the child
exits when the pipe closes (its parent is gone, however it died), and the parent exits at once
when the child dies, so the messages it held are not acknowledged and are delivered again, as
when the whole worker is killed.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.types import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from workers.token_stream import TokenStreamPublisher

log = logging.getLogger(__name__)

#: The parent's exit status when its engine process died under it.
ENGINE_DIED_EXIT = 70


class EngineStartFailed(RuntimeError):
    """The child could not load the model (the message says why)."""


def _picklable(exc: BaseException) -> BaseException:
    """The exception itself when it survives the pipe, else a `RuntimeError` that says it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _child_main(conn: Connection) -> None:
    """The child: load the engine, then run what the parent sends until the pipe closes."""
    from core.gc_freeze import freeze_startup_objects
    from workers.runtime import local_engine_loop, token_stream

    try:
        loop = local_engine_loop()  # the model, the batch and the token-stream publisher
        publisher = token_stream()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    freeze_startup_objects()  # the model: out of every full collection, as in the worker
    conn.send(("ready", None))
    outbox: queue.SimpleQueue[tuple[int, Any, bool]] = queue.SimpleQueue()
    threading.Thread(
        target=_send_results, args=(conn, outbox, publisher), name="engine-results", daemon=True
    ).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone: nobody waits for these rows
            os._exit(0)
        for key, request, tenant, share, stream_to in message:
            try:
                future = loop.submit(request, tenant=tenant, share=share, stream_to=stream_to)
            except Exception as exc:  # RequestTooLong: the row fails alone, at once
                outbox.put((key, _picklable(exc), False))
                continue
            future.add_done_callback(_finished_into(outbox, key, streamed=stream_to is not None))


def _finished_into(
    outbox: queue.SimpleQueue[tuple[int, Any, bool]], key: int, *, streamed: bool
) -> Callable[[Future[GenerationResult]], None]:
    """A done-callback (run on the loop's thread: only a queue append) that queues the row."""
    return lambda future: outbox.put((key, future, streamed))


def _send_results(
    conn: Connection,
    outbox: queue.SimpleQueue[tuple[int, Any, bool]],
    publisher: TokenStreamPublisher,
) -> None:
    """Send finished rows up the pipe, everything finished meanwhile in one message; streamed
    rows only once the publisher has written their tokens."""
    while True:
        items = [outbox.get()]
        while not outbox.empty():
            items.append(outbox.get())
        if any(streamed for _, _, streamed in items):
            publisher.flush()
        out = []
        for key, outcome, _ in items:
            if isinstance(outcome, Future):
                exc = outcome.exception()
                outcome = outcome.result() if exc is None else _picklable(exc)
            out.append((key, outcome))
        try:
            conn.send(out)
        except (EOFError, OSError):
            os._exit(0)


class EngineProcess:
    """`submit` as `EngineLoop.submit`, the loop running in a child process (module docstring).
    A request too long for the model fails its `Future` with `RequestTooLong`."""

    def __init__(self, *, start_timeout: float = 600.0) -> None:
        # A program of its own (not multiprocessing's spawn, which re-runs the parent's main
        # script): the child gets its end of a socket pair and nothing else of the parent.
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "workers.engine.process", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env={**os.environ, "PYTHONPATH": path},
        )
        theirs.close()  # its end lives in the child only: the child's death closes the pipe
        self._conn = Connection(ours.detach())
        if not self._conn.poll(start_timeout):
            self._process.kill()
            raise EngineStartFailed(f"the engine process did not start in {start_timeout:.0f} s")
        try:
            status, detail = self._conn.recv()
        except EOFError:
            raise EngineStartFailed(
                f"the engine process exited with {self._process.wait()}"
            ) from None
        if status != "ready":
            raise EngineStartFailed(detail)
        self._keys = itertools.count()
        self._futures: dict[int, Future[GenerationResult]] = {}
        self._lock = threading.Lock()  # the futures
        self._sending = threading.Lock()  # the pipe: one message at a time
        self._closing = False
        threading.Thread(target=self._receive, name="engine-process-results", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def submit(
        self,
        request: GenerationRequest,
        *,
        tenant: Hashable = "",
        share: float = 1.0,
        stream_to: str | None = None,
    ) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        with self._lock:
            key = next(self._keys)
            self._futures[key] = future
        with self._sending:
            self._conn.send([(key, request, tenant, share, stream_to)])
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the child; whatever it still held fails."""
        self._closing = True
        # Shut the socket down, not only close our descriptor: a thread blocked reading it
        # would keep it open, and the child would never see the end of its input.
        with socket.fromfd(self._conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
        with self._lock:
            left, self._futures = self._futures, {}
        for future in left.values():
            future.set_exception(RuntimeError("the engine process closed"))

    def _receive(self) -> None:
        while True:
            try:
                items = self._conn.recv()
            except (EOFError, OSError):
                break
            for key, outcome in items:
                with self._lock:
                    future = self._futures.pop(key)
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        if not self._closing:
            # The rows it held are lost with it; exiting leaves their messages unacknowledged,
            # to be delivered again, as when the whole worker is killed.
            log.critical("the engine process died (exit %s); the worker exits", self._exit_code())
            logging.shutdown()
            os._exit(ENGINE_DIED_EXIT)

    def _exit_code(self) -> int | None:
        try:
            return self._process.wait(1.0)
        except subprocess.TimeoutExpired:
            return None


if __name__ == "__main__":  # the child, started by `EngineProcess`
    # Signals are for its parent (Ctrl-C reaches the whole process group): the child lives
    # until the parent's end of the pipe closes, so a warm shutdown finishes the rows it holds.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s engine-process %(name)s: %(message)s"
    )
    _child_main(Connection(int(sys.argv[1])))
