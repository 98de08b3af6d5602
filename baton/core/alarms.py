"""AlarmBook: the recent alarms of one part of a node, for `baton status` (sans-IO).

An alarm is something an operator should see and may have to act on: a send that may
have reached the sink twice, a rate limit being waited out, a webhook that blocks
getUpdates. Each kind keeps how often it was raised and its latest detail; the book
keeps the newest ``kept`` alarms in order. Time is passed in.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class AlarmBook:
    def __init__(self, kept: int = 20) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=kept)
        self.counts: dict[str, int] = {}

    def raise_alarm(self, kind: str, detail: str, at_s: float) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self._recent.append({"kind": kind, "detail": detail, "at": at_s})

    def recent(self) -> list[dict[str, Any]]:
        """The newest alarms, oldest first (copies)."""
        return [dict(a) for a in self._recent]
