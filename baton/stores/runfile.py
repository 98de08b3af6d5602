"""Run-time files of a home: process locks and the node's run file.

Invariants:
- At most one supervisor and one node run per home: each holds an exclusive flock
  on its lock file for its whole life, and the kernel drops it when the process
  dies (also on kill -9), so a stale lock can never block a restart.
- A pid read from a lock file is trusted only while that lock is held; this keeps
  `baton down` from signalling an unrelated process that reused the pid.
- The run file is written (atomically) only once the node answers, and removed
  only by the process whose pid it names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from baton.core import safejson
from baton.core.errors import AlreadyRunning
from baton.stores.files import atomic_write, ensure_private_dir

PROBE_GRACE_S = 1.0


class ProcessLock:
    """An exclusive flock on ``path`` that records the holder's pid."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + PROBE_GRACE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # lock_holder() probes with a brief shared lock; only a lock that stays
                # taken means another process lives.
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                os.close(fd)
                pid = lock_holder(self.path)
                raise AlreadyRunning(
                    f"a {self.what} is already running for {self.path.parent.parent} (pid {pid})"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def lock_holder(path: Path) -> int | None:
    """The pid holding the lock at ``path``, or None if nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def write_run_file(path: Path, info: dict[str, Any]) -> None:
    ensure_private_dir(path.parent)
    atomic_write(path, json.dumps(info, indent=2).encode() + b"\n")


def read_run_file(path: Path) -> dict[str, Any] | None:
    """The run file's content, or None if missing or unreadable (a crash mid-way)."""
    try:
        data = safejson.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_run_file(path: Path, pid: int) -> None:
    info = read_run_file(path)
    if info is not None and info.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
