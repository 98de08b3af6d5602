"""Replicas: which standbys hold every reply marker the holder has sent (sans-IO).

Theory of operation (Patroni's synchronous mode, with reply markers for the WAL). The
lease record names the in-sync set: only its members (and the holder) take the lease
over by themselves. So before a reply leaves, every standby the stored record may name
must have durably recorded the reply's prepared marker; else a standby that never heard
of the reply could take over and send it again.

- **Named**: every standby the store may name now or once the lease's writes land:
  the in-sync sets of the holder's confirmed record, of its write in flight, and of
  writes whose answer was lost (``core.lease.may_name``). The lease tells us.
- The **wait set** is the named set plus the **joiners** (standbys catching up to
  join). Every marker sent to a member of the wait set is *outstanding* until that
  member acks it (after a durable write).
- A message's reply is **blocked** while any member of the wait set has not acked its
  prepared marker. A standby that has not acked a prepared marker within the timeout
  is **removed**: a joiner the store cannot name is dropped at once; a named one is
  marked, left out of ``wanted()`` (the holder asks the lease to write the set without
  it), and still waited on until the lease says the store can no longer name it. Only
  then are its markers forgotten and the replies go on.
- A standby out of the set asks to join with the keys it holds unfinished; the holder
  makes it a joiner (so it is waited on from now), sends it markers for those keys and
  for everything in flight, and once the joiner has acked them all, ``wanted()`` names
  it and the holder asks the lease to add it.

Invariants:
- wait set ⊇ named set, always: a standby leaves the wait set only once the store can
  no longer name it.
- ``wanted()`` never names a joiner with a marker outstanding, and never a standby
  being removed.
- Nothing here reads a clock or sends anything: callers pass ``now`` and carry out
  what ``wanted()``, ``retries()`` and ``blocking()`` say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class Outstanding:
    key: str  # the ledger key the marker is about
    prepared: bool  # a prepared marker (it blocks the message's replies)
    first_sent: float
    last_sent: float


class Replicas:
    def __init__(self, me: str) -> None:
        self.me = me
        self.named: frozenset[str] = frozenset()
        self.joiners: dict[str, float] = {}  # peer -> since when (local ms)
        self.removing: set[str] = set()
        self.outstanding: dict[tuple[str, str], Outstanding] = {}  # (peer, marker id)

    # --- the sets ------------------------------------------------------------------

    @property
    def wait_set(self) -> frozenset[str]:
        return self.named | self.joiners.keys()

    def named_are(self, may_name: Iterable[str]) -> None:
        """The store may name ``may_name`` (the lease says). A joiner in it is a member
        now; a standby being removed that it no longer names is gone."""
        self.named = frozenset(may_name) - {self.me}
        for peer in [p for p in self.joiners if p in self.named]:
            del self.joiners[peer]
        self.removing &= self.named | self.joiners.keys()
        self._forget(lambda peer: peer not in self.wait_set)

    def join(self, peer: str, now: float) -> bool:
        """``peer`` asks to join: it is waited on from now. False if it is in already
        (named and not being removed)."""
        if peer == self.me or (peer in self.named and peer not in self.removing):
            return False
        if peer not in self.named:
            self.joiners.setdefault(peer, now)
        return True

    def leave(self, peer: str) -> None:
        """``peer`` is no longer an active member: drop it (removed if named)."""
        self.joiners.pop(peer, None)
        if peer in self.named:
            self.removing.add(peer)
        self._forget(lambda p: p == peer and p not in self.named)

    def wanted(self) -> tuple[str, ...]:
        """The in-sync set the record should name: the named set less those being
        removed, plus every joiner that has acked everything it was sent."""
        ready = {p for p in self.joiners if not self._owes(p)}
        return tuple(sorted((self.named | ready) - self.removing))

    # --- markers -------------------------------------------------------------------

    def sent(self, peer: str, marker_id: str, key: str, prepared: bool, now: float) -> None:
        """A marker went to ``peer``: outstanding if ``peer`` is waited on."""
        if peer in self.wait_set:
            seen = self.outstanding.get((peer, marker_id))
            first = now if seen is None else seen.first_sent
            self.outstanding[(peer, marker_id)] = Outstanding(key, prepared, first, now)

    def acked(self, peer: str, marker_id: str) -> bool:
        """``peer`` durably recorded the marker. True if it was outstanding."""
        return self.outstanding.pop((peer, marker_id), None) is not None

    def blocking(self, key: str) -> frozenset[str]:
        """The standbys that have not acked ``key``'s prepared marker: its replies wait."""
        return frozenset(
            peer for (peer, _), o in self.outstanding.items() if o.prepared and o.key == key
        )

    def overdue(self, now: float, timeout_ms: float) -> set[str]:
        """Standbys with a prepared marker unacked for ``timeout_ms`` (and joiners that
        take 4 timeouts). Named ones are marked for removal and returned (the caller
        asks the lease for ``wanted()``); the others are dropped at once."""
        late = {
            peer
            for (peer, _), o in self.outstanding.items()
            if o.prepared and now - o.first_sent >= timeout_ms
        }
        late |= {p for p, since in self.joiners.items() if now - since >= 4 * timeout_ms}
        for peer in late - self.named:
            self.joiners.pop(peer, None)
        fresh = (late & self.named) - self.removing
        self.removing |= fresh
        self._forget(lambda peer: peer not in self.wait_set)
        return fresh

    def retries(self, now: float, every_ms: float) -> list[tuple[str, str]]:
        """(peer, marker id) of outstanding markers last sent ``every_ms`` ago or more."""
        return [
            (peer, marker_id)
            for (peer, marker_id), o in self.outstanding.items()
            if now - o.last_sent >= every_ms
        ]

    def reset(self) -> None:
        """A new term: nothing is outstanding, nobody is joining or being removed."""
        self.joiners.clear()
        self.removing.clear()
        self.outstanding.clear()

    # --- helpers ---------------------------------------------------------------------

    def _owes(self, peer: str) -> bool:
        return any(p == peer for (p, _) in self.outstanding)

    def _forget(self, gone: Callable[[str], bool]) -> None:
        for item in [item for item in self.outstanding if gone(item[0])]:
            del self.outstanding[item]


def marker_id(kind: str, key: str, index: int | None) -> str:
    """The identity of a marker, as its ack names it."""
    return f"{kind}:{-1 if index is None else index}:{key}"
