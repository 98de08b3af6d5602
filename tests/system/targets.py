"""Stand-in node entry points for supervisor tests (importable by spawned children)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any


def _note_start(home: str) -> None:
    with open(Path(home) / "starts", "a") as fh:
        fh.write(f"{os.getpid()}\n")


def crash_at_once(home: str, flags: Any, conn: Any) -> None:
    _note_start(home)
    conn.close()
    os._exit(3)


def fatal_at_once(home: str, flags: Any, conn: Any) -> None:
    _note_start(home)
    conn.send({"ok": False, "error": "config_error", "detail": "lease_ttl_ms: too small"})
    conn.close()
    raise SystemExit(78)


def ready_then_wait(home: str, flags: Any, conn: Any) -> None:
    _note_start(home)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conn.send({"ok": True, "pid": os.getpid()})
    conn.close()
    deadline = time.monotonic() + 120  # never outlive a test run
    while not stop.wait(0.1) and time.monotonic() < deadline:
        pass
    raise SystemExit(0)


def never_ready(home: str, flags: Any, conn: Any) -> None:
    _note_start(home)
    threading.Event().wait(120)  # hang without answering, but never outlive a test run


def restart_asked_then_crash(home: str, flags: Any, conn: Any) -> None:
    """Ask for a restart (EXIT_RESTART) on every start but the fifth, which crashes."""
    _note_start(home)
    conn.close()
    starts = len((Path(home) / "starts").read_text().split())
    os._exit(3 if starts >= 5 else 75)
