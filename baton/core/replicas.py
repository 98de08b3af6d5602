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
- A message's reply is **blocked** while any bound member of the wait set (below) has
  not acked its prepared marker. A bound standby that owes a prepared marker and has
  acked nothing since it was sent, for the timeout, is **removed** (one that acks on,
  working off a queue on a busy host, is slow, not gone: it is removed only once the
  marker is ``STALL_TIMEOUTS`` timeouts old): a joiner the store cannot name is dropped at once;
  a named one is marked, left out of ``wanted()`` (the holder asks the lease to write
  the set without it), and still waited on until the lease says the store can no
  longer name it. Only then are its markers forgotten and the replies go on. A joiner
  is paced by its acks: however long its catch-up, it is dropped only once it owes
  something and has acked nothing for ``STALL_TIMEOUTS`` ack timeouts.
- A message not answered soon is told as **received**: that marker blocks too, not a
  reply but the channel cursor, which passes an unanswered message only once every
  bound standby holds it (so a slow topic holds up no other, and a takeover finds it).
  A late received ack removes nobody (only a late prepared one does): a slow standby
  costs the cursor its lead, never the set a member.
- A standby out of the set asks to join with the keys it holds unfinished; the holder
  makes it a joiner (so it is waited on from now), sends it markers for those keys and
  for everything in flight, and once the joiner has acked them all, ``wanted()`` names
  it and the holder asks the lease to add it.

Invariants:
- wait set ⊇ named set, always: a standby leaves the wait set only once the store can
  no longer name it (the lease counts the set it was asked for as one it may name).
- Replies wait on the *bound* standbys: the named ones, the joiners the lease was asked
  to name, and joiners that have acked their catch-up (every marker sent by the time
  their last page of keys came). A joiner is asked for once it is bound and has acked
  every marker sent to it before it was bound: from binding on nothing escapes it, so
  it gets there however busy the holder is. A joiner not yet bound holds nothing up.
- ``wanted()`` never names a joiner with a marker outstanding, and never a standby
  being removed.
- Nothing here reads a clock or sends anything: callers pass ``now`` and carry out
  what ``wanted()``, ``retries()`` and ``blocking()`` say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: A joiner that owes markers (or pages of its keys) and has acked nothing for this
#: many ack timeouts is dropped: it is gone or cannot keep up.
STALL_TIMEOUTS = 4


@dataclass
class Outstanding:
    key: str  # the ledger key the marker is about
    kind: str  # prepared (the replies wait on it), received (the cursor does), committed
    first_sent: float
    last_sent: float
    bound: bool  # sent while its standby held replies up (its reply waits for the ack)

    @property
    def blocks(self) -> bool:
        """Something waits on its ack: a reply (prepared) or the cursor (received)."""
        return self.kind != "committed"


class Replicas:
    def __init__(self, me: str) -> None:
        self.me = me
        self.named: frozenset[str] = frozenset()
        # peer -> when it last made progress (joined, sent a page of its keys, acked, or
        # owed nothing; local ms): a joiner is paced by its acks, not a fixed deadline
        self.joiners: dict[str, float] = {}
        self.removing: set[str] = set()
        self.asked: frozenset[str] = frozenset()  # the set last asked of the lease
        self.paging: set[str] = set()  # joiners whose unfinished keys are still arriving
        self.complete_at: dict[str, float] = {}  # joiner -> when its last page arrived
        self.binding: set[str] = set()  # joiners that caught up: they hold replies up
        self.late: set[str] = set()  # dropped or removed for lateness (the caller clears)
        self.acked_at: dict[str, float] = {}  # peer -> its last ack (local ms)
        self.outstanding: dict[tuple[str, str], Outstanding] = {}  # (peer, marker id)
        # indexes of ``outstanding`` (an ack must not scan them all): key -> the items
        # of its blocking markers; marker id -> how many peers owe it
        self._blocking: dict[str, set[tuple[str, str]]] = {}
        self._owed: dict[str, int] = {}

    # --- the sets ------------------------------------------------------------------

    @property
    def wait_set(self) -> frozenset[str]:
        return self.named | self.joiners.keys()

    @property
    def bound(self) -> frozenset[str]:
        """The standbys that block replies: those the store may name, and joiners the
        lease was asked to name (its write may land before it reaches the view)."""
        return self.named | ((self.asked | self.binding) & self.joiners.keys())

    def asked_for(self, in_sync: Iterable[str]) -> None:
        """The lease was asked to name ``in_sync``."""
        self.asked = frozenset(in_sync)

    def named_are(self, may_name: Iterable[str]) -> None:
        """The store may name ``may_name`` (the lease says). A joiner in it is a member
        now; a standby being removed that it no longer names is gone."""
        self.named = frozenset(may_name) - {self.me}
        for peer in [p for p in self.joiners if p in self.named]:
            del self.joiners[peer]
        # a removed joiner stays while the lease may still name it (asked, not yet dropped)
        gone = self.removing - self.named - self.asked
        for peer in gone:
            self._drop(peer)
        self.removing -= gone
        for peer in [p for p in self.complete_at if p not in self.joiners]:
            self._drop(peer)  # named now (or gone): no longer joining
        self._forget(lambda peer: peer not in self.wait_set)

    def join(self, peer: str, now: float, more: bool = False) -> bool:
        """``peer`` asks to join: it is waited on from now. False if it is in already
        (named and not being removed). ``more``: more of its unfinished keys are to
        come (it is not ready before they have)."""
        if peer == self.me or (peer in self.named and peer not in self.removing):
            return False
        if peer not in self.named:
            self.joiners[peer] = now
        if more:
            self.paging.add(peer)
        elif peer in self.paging or peer not in self.complete_at:
            self.paging.discard(peer)
            self.complete_at[peer] = now
        return True

    def _drop(self, peer: str) -> None:
        self.joiners.pop(peer, None)
        self.paging.discard(peer)
        self.binding.discard(peer)
        self.complete_at.pop(peer, None)

    def leave(self, peer: str) -> None:
        """``peer`` is no longer an active member: drop it (removed if named)."""
        self._drop(peer)
        if peer in self.named:
            self.removing.add(peer)
        self._forget(lambda p: p == peer and p not in self.named)

    def wanted(self) -> tuple[str, ...]:
        """The in-sync set the record should name: the named set less those being
        removed, plus every joiner that has acked everything it was sent."""
        self._bind()
        ready = {
            p
            for p in self.binding & self.joiners.keys()
            if not any(q == p and not o.bound for (q, _), o in self.outstanding.items())
        }
        return tuple(sorted((self.named | ready) - self.removing))

    def _bind(self) -> None:
        """A joiner whose catch-up markers (all sent by the time its last page came) are
        acked holds replies up from now: then every marker sent before that drains,
        and nothing sent after escapes it, so it becomes ready however busy the holder."""
        for peer, done in self.complete_at.items():
            if peer in self.binding or peer not in self.joiners:
                continue
            if not any(
                q == peer and o.first_sent <= done for (q, _), o in self.outstanding.items()
            ):
                self.binding.add(peer)

    # --- markers -------------------------------------------------------------------

    def sent(self, peer: str, marker_id: str, key: str, kind: str, now: float) -> None:
        """A marker of ``kind`` went to ``peer``: outstanding if ``peer`` is waited on."""
        if peer in self.wait_set:
            seen = self.outstanding.get((peer, marker_id))
            first = now if seen is None else seen.first_sent
            bound = peer in self.bound if seen is None else seen.bound
            self._put((peer, marker_id), Outstanding(key, kind, first, now, bound))

    def acked(self, peer: str, marker_id: str, now: float) -> Outstanding | None:
        """``peer`` durably recorded the marker: what was outstanding (None: nothing)."""
        done = self._pop((peer, marker_id))
        if done is not None:
            self.acked_at[peer] = now
            if peer in self.joiners:
                self.joiners[peer] = now
        return done

    def owed(self, marker_id: str) -> bool:
        """Does some standby still owe an ack of this marker?"""
        return marker_id in self._owed

    def blocking(self, key: str) -> frozenset[str]:
        """The bound standbys that have not acked ``key``'s prepared (or received)
        marker: its replies wait, and the channel cursor may not pass it. (A joiner not
        yet asked for must ack everything before it is asked for, but holds nothing up:
        it could not take over.)"""
        bound = self.bound
        return frozenset(peer for (peer, _) in self._blocking.get(key, ()) if peer in bound)

    def blocked_keys(self) -> frozenset[str]:
        """Every key some bound standby has not acked a prepared or received marker of."""
        bound = self.bound
        return frozenset(
            key for key, items in self._blocking.items() if any(p in bound for (p, _) in items)
        )

    def overdue(self, now: float, timeout_ms: float) -> set[str]:
        """Bound standbys with a prepared marker unacked (a reply waits on them) that
        acked nothing since it was sent for ``timeout_ms``, or whose marker is
        ``STALL_TIMEOUTS`` timeouts old; and joiners that owe markers or keys and made
        no progress for ``STALL_TIMEOUTS`` timeouts (a long catch-up that acks on is
        never cut short).
        Named ones are marked for removal and returned (the caller asks the lease for
        ``wanted()``); the others are dropped at once (``late`` names them all)."""
        bound = self.bound
        late: set[str] = set()
        owing: set[str] = set()
        for (peer, _), o in self.outstanding.items():
            owing.add(peer)
            if o.kind == "prepared" and peer in bound:
                idle = now - max(o.first_sent, self.acked_at.get(peer, o.first_sent))
                if idle >= timeout_ms or now - o.first_sent >= STALL_TIMEOUTS * timeout_ms:
                    late.add(peer)
        for peer, last in self.joiners.items():
            if peer not in owing and peer not in self.paging:
                self.joiners[peer] = now  # nothing to do: its clock does not run
            elif now - last >= STALL_TIMEOUTS * timeout_ms:
                late.add(peer)
        nameable = self.named | (self.asked & self.joiners.keys())
        for peer in late - nameable:
            self._drop(peer)
            self.late.add(peer)
        fresh = (late & nameable) - self.removing
        self.late |= fresh
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

    def forget_key(self, key: str) -> None:
        """No marker about ``key`` is owed any more (they told what the ledger never
        came to hold: its write failed)."""
        for item in [item for item, o in self.outstanding.items() if o.key == key]:
            self._pop(item)

    def reset(self) -> None:
        """A new term: nothing is outstanding, nobody is joining or being removed."""
        self.joiners.clear()
        self.removing.clear()
        self.asked = frozenset()
        self.paging.clear()
        self.binding.clear()
        self.complete_at.clear()
        self.outstanding.clear()
        self.acked_at.clear()
        self._blocking.clear()
        self._owed.clear()

    # --- helpers ---------------------------------------------------------------------

    def _owes(self, peer: str) -> bool:
        return any(p == peer for (p, _) in self.outstanding)

    def _forget(self, gone: Callable[[str], bool]) -> None:
        for item in [item for item in self.outstanding if gone(item[0])]:
            self._pop(item)

    def _put(self, item: tuple[str, str], o: Outstanding) -> None:
        if self.outstanding.get(item) is None:
            self._owed[item[1]] = self._owed.get(item[1], 0) + 1
        self.outstanding[item] = o
        if o.blocks:
            self._blocking.setdefault(o.key, set()).add(item)

    def _pop(self, item: tuple[str, str]) -> Outstanding | None:
        o = self.outstanding.pop(item, None)
        if o is None:
            return None
        left = self._owed[item[1]] - 1
        if left:
            self._owed[item[1]] = left
        else:
            del self._owed[item[1]]
        if o.blocks:
            items = self._blocking[o.key]
            items.discard(item)
            if not items:
                del self._blocking[o.key]
        return o


def marker_id(kind: str, key: str, index: int | None) -> str:
    """The identity of a marker, as its ack names it."""
    return f"{kind}:{-1 if index is None else index}:{key}"
