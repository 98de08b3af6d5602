"""The fault controls of the bundled chat service: Faults (what the chat does wrong on
purpose, for tests) and Limiter (those faults and the token bucket of sendMessage).

Invariants:
- Faults.updated either returns new, valid values or raises ChatRefused: never half.
- Limiter does no locking, no waiting and reads no clock: ChatStore calls it under its
  lock with the time of its clock. A new rate or burst refills the bucket; a throttled
  take consumes throttle_next before the bucket.
- Faults live in memory only: a restart forgets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from baton.channels.chat_schema import ChatRefused

_FAULT_INTS = {
    "burst": (1, 1_000_000),
    "throttle_next": (0, 1_000_000),
    "retry_after": (1, 3600),
    "send_delay_ms": (0, 60_000),
}
MAX_RATE_PER_S = 1_000_000.0


@dataclass(frozen=True)
class Faults:
    """What the chat does wrong on purpose (kept in memory, for tests)."""

    rate_per_s: float = 0.0  # the token bucket's refill rate on sendMessage; 0: off
    burst: int = 1  # the bucket's size
    throttle_next: int = 0  # this many next sendMessage calls answer 429
    retry_after: int = 1  # ... with this retry_after
    send_delay_ms: int = 0  # a delivered send answers this long after its commit

    def updated(self, values: dict[str, Any]) -> Faults:
        """These faults with ``values`` applied; a bad name or value raises ChatRefused."""
        changes: dict[str, Any] = {}
        for name, value in values.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if name == "rate_per_s":
                if not (number and math.isfinite(value) and 0 <= value <= MAX_RATE_PER_S):
                    raise ChatRefused(f"rate_per_s must be a number in 0..{MAX_RATE_PER_S:g}")
                changes[name] = float(value)
            elif name in _FAULT_INTS:
                lo, hi = _FAULT_INTS[name]
                if not (number and isinstance(value, int) and lo <= value <= hi):
                    raise ChatRefused(f"{name} must be an integer in {lo}..{hi}")
                changes[name] = value
            else:
                known = ", ".join(["rate_per_s", *_FAULT_INTS])
                raise ChatRefused(f"unknown fault {name!r} (known: {known})")
        return replace(self, **changes)


class Limiter:
    """The fault controls and the token bucket of sendMessage. Not thread-safe: the
    store calls it under its lock, with the time of its clock."""

    def __init__(self, now: float) -> None:
        self.faults = Faults()
        self._tokens, self._stamp = float(self.faults.burst), now

    def set(self, values: dict[str, Any], now: float) -> Faults:
        """Apply ``values`` (all or none, see Faults.updated); a new rate or burst
        refills the bucket."""
        new, old = self.faults.updated(values), self.faults
        if (new.rate_per_s, new.burst) != (old.rate_per_s, old.burst):
            self._tokens, self._stamp = float(new.burst), now
        self.faults = new
        return new

    def take(self, now: float) -> int | None:
        """None: this send may pass; else it is refused and may retry after so many s."""
        f = self.faults
        if f.throttle_next > 0:
            self.faults = replace(f, throttle_next=f.throttle_next - 1)
            return f.retry_after
        if f.rate_per_s <= 0:
            return None
        refill = max(0.0, now - self._stamp) * f.rate_per_s
        self._tokens, self._stamp = min(float(f.burst), self._tokens + refill), now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return max(1, math.ceil((1 - self._tokens) / f.rate_per_s))
