"""A token bucket per key (a client address): at most ``burst`` requests at once, then
``rate_per_s`` on average. Time is passed in; the table of buckets is bounded, dropping
the oldest key when full, so a flood of addresses cannot grow memory."""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 4096) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now_s: float) -> bool:
        """Take one token from ``key``'s bucket at time ``now_s``; False if there is none."""
        tokens, last = self._buckets.pop(key, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + max(0.0, now_s - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, max(last, now_s))  # a clock stepped back earns nothing
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed
