"""Logging setup: structured JSON lines in the home's logs/, a short human form on stderr."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from pathlib import Path
from typing import Any

from baton.stores.files import ensure_private_dir


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


def setup_logging(logs_dir: Path, name: str, level: str, stderr: bool = True) -> None:
    """Send baton's logs to ``logs_dir/<name>.log`` (0600, rotated) and to stderr."""
    ensure_private_dir(logs_dir)
    path = logs_dir / f"{name}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=5 * 1024 * 1024, backupCount=3
    )
    file_handler.setFormatter(JsonFormatter())
    root.addHandler(file_handler)
    if stderr:
        console = logging.StreamHandler()
        console.setFormatter(
            logging.Formatter(f"baton {name}[%(process)d] %(levelname)s %(message)s")
        )
        root.addHandler(console)
    root.setLevel(level.upper())
    logging.getLogger("waitress").setLevel(logging.WARNING)
