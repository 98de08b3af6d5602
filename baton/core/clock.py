"""Clocks. The core never reads time itself: callers pass ``now`` in.

Two kinds of time:
- ``monotonic_ms``: local elapsed time on CLOCK_BOOTTIME (keeps counting while a
  laptop sleeps). Only ever compared with other readings of the same machine.
- ``wall_s``: Unix wall time, for display and records only; never compared
  across machines.

The real clock lives in baton.adapters.system_clock (it reads the system); FakeClock is for tests.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def monotonic_ms(self) -> float:
        """Milliseconds on a local clock that never goes back and counts suspend."""

    def wall_s(self) -> float:
        """Seconds since the Unix epoch; may jump."""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, monotonic_ms: float = 0.0, wall_s: float = 1_700_000_000.0) -> None:
        self._mono = monotonic_ms
        self._wall = wall_s

    def monotonic_ms(self) -> float:
        return self._mono

    def wall_s(self) -> float:
        return self._wall

    def advance(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("monotonic time does not go back")
        self._mono += ms
        self._wall += ms / 1000.0

    def jump_wall(self, seconds: float) -> None:
        self._wall += seconds
