"""Counters and histograms: named figures shared across threads.

Invariant: a counter never decreases; snapshot() is a consistent copy.
Names are dotted (``wire.dropped.malformed``); /metrics renders them for
Prometheus (baton.api.prometheus) by replacing dots with underscores.
A histogram (``observe``) keeps how many values fell at or under each of BUCKETS
(seconds), their count and their sum, as Prometheus's histograms do.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the histograms' buckets: handoffs take tens of ms,
#: failovers a lease's ttl (15 s by default) and more.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)


@dataclass
class Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))  # not cumulative
    count: int = 0
    sum: float = 0.0

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, values at or under it), ending with +Inf: the count."""
        out, total = [], 0
        for bound, n in zip(BUCKETS, self.buckets, strict=True):
            total += n
            out.append((bound, total))
        out.append((float("inf"), self.count))
        return out


class Counters:
    """Thread-safe counters and histograms. Cheap enough to bump on every frame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._histograms: dict[str, Histogram] = {}

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

    def observe(self, name: str, seconds: float) -> None:
        """One duration into the histogram ``name``."""
        if not seconds >= 0:
            raise ValueError("a duration is a number of seconds, not negative")
        with self._lock:
            h = self._histograms.setdefault(name, Histogram())
            at = bisect.bisect_left(BUCKETS, seconds)
            if at < len(BUCKETS):
                h.buckets[at] += 1
            h.count += 1
            h.sum += seconds

    def histograms(self) -> dict[str, Histogram]:
        with self._lock:
            return {
                name: Histogram(list(h.buckets), h.count, h.sum)
                for name, h in sorted(self._histograms.items())
            }
