"""Logging setup: structured JSON lines in the home's logs/, a short human form on stderr.

Invariants (issue 16: 20,000 refused requests added 2.45 MB to a log in 8 s):
- Every handler passes a record through one ``RepeatFilter``: the same message (its
  template, before the arguments, with the caller's ``extra={"limit_key": ...}``; the
  text itself for a bare "%s") from the same logger at the same level passes at most
  ``limits.LOG_BURST`` times per ``limits.LOG_WINDOW_S``; the first one after a window
  in which some were left out says how many (if none comes, the count is not written).
  A record with a structured ``event`` always passes: tools read every one (an
  ambiguous send must never be hidden).
- Log files rotate at ``limits.LOG_FILE_BYTES``. stderr gets the human form unless
  ``BATON_LOG_STDERR=0`` (the detached supervisor runs so: its stderr is a file nothing
  rotates, ``logs/supervisor.out``, and keeps only what escapes logging).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton.adapters import limits
from baton.stores.files import ensure_private_dir

STDERR_ENV = "BATON_LOG_STDERR"  # "0": no human form on stderr
MAX_KEYS = 2000  # distinct messages remembered; past it, finished windows are forgotten


def _key_text(record: logging.LogRecord) -> str:
    """What makes two records "the same message": the template, with the caller's
    ``limit_key`` (an error code...); a bare "%s" template, its text."""
    template = str(record.msg)
    if template.strip() in ("%s", "%r"):
        return record.getMessage()[:160]
    return f"{template}\x00{getattr(record, 'limit_key', '')}"


class RepeatFilter(logging.Filter):
    """Lets the same message through at most ``burst`` times per ``window_s``."""

    def __init__(
        self,
        burst: int = limits.LOG_BURST,
        window_s: float = limits.LOG_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, int, str], list[float]] = {}  # [start, passed, left]

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, "_baton_passes", None)
        if decided is not None:  # one record, several handlers: decided once
            return bool(decided)
        if getattr(record, "event", None) is not None:
            return True  # a structured event (an ambiguous send...): tools read them all
        key = (record.name, record.levelno, _key_text(record))
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.window_s:
                left_out = int(window[2]) if window else 0
                if len(self._windows) >= MAX_KEYS:
                    self._forget(now)
                window = self._windows[key] = [now, 0, 0]
                if left_out:
                    record.msg = f"{record.msg} [{left_out} more like this left out]"
            passes = window[1] < self.burst
            window[1 if passes else 2] += 1
        record._baton_passes = passes
        return passes

    def _forget(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if now - w[0] >= self.window_s]:
            del self._windows[key]
        if len(self._windows) >= MAX_KEYS:  # all of them live: a flood of distinct lines
            self._windows.clear()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "thread": record.threadName,
            "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):  # log.warning(..., extra={"event": {...}}): for tools
            doc["event"] = event
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(logs_dir: Path, name: str, level: str, stderr: bool | None = None) -> None:
    """Send baton's logs to ``logs_dir/<name>.log`` (0600, rotated) and to stderr (unless
    ``stderr`` is False, or None and BATON_LOG_STDERR is 0), repeats limited."""
    if stderr is None:
        stderr = os.environ.get(STDERR_ENV, "1") != "0"
    repeats = RepeatFilter()
    ensure_private_dir(logs_dir)
    path = logs_dir / f"{name}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=limits.LOG_FILE_BYTES, backupCount=limits.LOG_FILE_BACKUPS
    )
    file_handler.setFormatter(JsonFormatter())
    file_handler.addFilter(repeats)
    root.addHandler(file_handler)
    if stderr:
        console = logging.StreamHandler()
        console.setFormatter(
            logging.Formatter(f"baton {name}[%(process)d] %(levelname)s %(message)s")
        )
        console.addFilter(repeats)
        root.addHandler(console)
    root.setLevel(level.upper())
    logging.getLogger("waitress").setLevel(logging.WARNING)
