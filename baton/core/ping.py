"""PingTracker: round-trip times and reachability of peers, from pings and pongs.

Invariants:
- A pong counts only if it answers a ping we sent to that same peer and that has
  not yet expired; anything else is ignored (and reported as such).
- A peer is reachable while its last good pong is younger than ``timeout_ms``.
- Outstanding pings older than ``timeout_ms`` are forgotten, so memory is bounded
  by peers x (timeout / interval).

All times are local monotonic milliseconds passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from baton.core.versions import Versions


@dataclass
class _Link:
    last_ping_ms: float | None = None
    last_pong_ms: float | None = None
    rtt_ms: float | None = None
    outstanding: dict[str, float] = field(default_factory=dict)
    pings: int = 0
    pongs: int = 0


@dataclass(frozen=True)
class PeerReport:
    machine_id: str
    reachable: bool
    rtt_ms: float | None
    last_seen_ms_ago: float | None
    pings: int
    pongs: int
    versions: Versions | None = None  # what its last ping said it runs (None: not said)


class PingTracker:
    def __init__(self, interval_ms: float, timeout_ms: float | None = None) -> None:
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        self.interval_ms = interval_ms
        self.timeout_ms = timeout_ms if timeout_ms is not None else 3 * interval_ms
        self._links: dict[str, _Link] = {}

    def set_peers(self, machine_ids: Iterable[str]) -> None:
        wanted = set(machine_ids)
        self._links = {m: self._links.get(m, _Link()) for m in sorted(wanted)}

    def due(self, now_ms: float) -> list[str]:
        """Peers whose next ping is due at ``now_ms``."""
        return [
            m
            for m, link in self._links.items()
            if link.last_ping_ms is None or now_ms - link.last_ping_ms >= self.interval_ms
        ]

    def sent(self, machine_id: str, ping_id: str, now_ms: float) -> None:
        link = self._links.get(machine_id)
        if link is None:
            return
        link.last_ping_ms = now_ms
        link.pings += 1
        link.outstanding = {
            pid: t for pid, t in link.outstanding.items() if now_ms - t < self.timeout_ms
        }
        link.outstanding[ping_id] = now_ms

    def pong(self, machine_id: str, ping_id: str, now_ms: float) -> float | None:
        """Record a pong; return the round-trip time, or None if it answers nothing."""
        link = self._links.get(machine_id)
        if link is None:
            return None
        sent_ms = link.outstanding.pop(ping_id, None)
        if sent_ms is None or now_ms - sent_ms >= self.timeout_ms:
            return None
        link.rtt_ms = now_ms - sent_ms
        link.last_pong_ms = now_ms
        link.pongs += 1
        return link.rtt_ms

    def report(self, now_ms: float) -> list[PeerReport]:
        out = []
        for machine_id, link in self._links.items():
            age = None if link.last_pong_ms is None else now_ms - link.last_pong_ms
            out.append(
                PeerReport(
                    machine_id=machine_id,
                    reachable=age is not None and age < self.timeout_ms,
                    rtt_ms=link.rtt_ms,
                    last_seen_ms_ago=age,
                    pings=link.pings,
                    pongs=link.pongs,
                )
            )
        return out
