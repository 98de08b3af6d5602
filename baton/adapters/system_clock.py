"""The real clock: CLOCK_BOOTTIME for elapsed time, time.time() for display."""

from __future__ import annotations

import time

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


class SystemClock:
    """Reads the machine's clocks. Satisfies baton.core.clock.Clock."""

    def monotonic_ms(self) -> float:
        return time.clock_gettime_ns(_BOOTTIME) / 1_000_000

    def wall_s(self) -> float:
        return time.time()
