"""Counters: named, monotonically increasing integers shared across threads.

Invariant: a counter never decreases; snapshot() is a consistent copy.
Names are dotted (``wire.dropped.malformed``); /metrics renders them for
Prometheus by replacing dots with underscores.
"""

from __future__ import annotations

import threading


class Counters:
    """Thread-safe counters. Cheap enough to bump on every frame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        if n < 0:
            raise ValueError("counters only go up")
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._values.items()))
