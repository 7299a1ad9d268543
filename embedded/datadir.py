"""The data dir of an embedded stack: one owner at a time, writable, with room to grow."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

from core.settings import unwritable_reason
from embedded.errors import StartupError

LOCK_FILE = "rcs.lock"
#: PostgreSQL's WAL segments alone are 16 MB; below this the first checkpoint fails.
MIN_FREE_BYTES = 64 * 1024 * 1024


def check_usable(data_dir: Path, *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Fail with one line when the data dir cannot be created, written or is nearly full."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-probe"
        with probe.open("wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"data dir {data_dir} is not writable: {unwritable_reason(exc)}"
        ) from exc
    free = shutil.disk_usage(data_dir).free
    if free < min_free_bytes:
        raise StartupError(
            f"data dir {data_dir} has {free // (1024 * 1024)} MB free;"
            f" the embedded stack needs at least {min_free_bytes // (1024 * 1024)} MB"
        )


class DataDirLock:
    """An exclusive lock on the data dir held for the life of one `rcs serve` (or CLI command).

    `flock` is released by the kernel when its holder dies, so a crash never leaves it stale.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"another rcs process (pid {holder}) is using the data dir {self.path.parent};"
                " stop it first or set RCS_DATA_DIR to another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
