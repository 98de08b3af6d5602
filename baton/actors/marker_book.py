"""MarkerBook: the DeliveryActor's reply markers and in-sync standbys (DESIGN.md section
6, steps 3 and 4; the rules in baton.core.replicas).

On the holder it tells every active peer a received, reply-prepared or reply-committed
marker (ReplyMarkerTransport signs it), keeps each one outstanding until the standbys
the store may name in sync (and the joiners) ack it, sends it again until they do, says
which messages' replies must still wait (``blocking``) and which messages the channel
cursor may pass though unanswered (``secured``: a slow topic holds up no other), and
asks the lease for the
in-sync set the standbys have earned (``want``): without the laggards, with the joiners
that caught up. A standby out of the set (``request_sync``) asks the holder to join,
naming the keys it holds unfinished; the holder answers with the markers of those keys
and of every reply in flight.

On a standby it applies what the holder tells: the marker must be signed by its sender,
an active member (``open_marker``), and is applied to the ledger (which acks an entry
once every reply is committed, so retention prunes standbys' ledgers too); once it is
durably applied the standby acks it. A peer's envelope never raises here: what is
refused or cannot be applied is logged and counted. It runs on the DeliveryActor's
thread, which owns the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from baton.actors.indexed_ledger import IndexedLedger
from baton.core.errors import LedgerError, MarkerRefused
from baton.core.ledger import (
    LedgerEntry,
    LedgerState,
    MarkerKind,
    ReplyMarker,
    marker_for,
    pending_order,
)
from baton.core.registry import MachineEntry, Verify
from baton.core.replicas import Replicas, marker_id
from baton.gate import LeaseView
from baton.metrics import Counters
from baton.wire.envelope import Envelope
from baton.wire.marker_transport import (
    ReplyMarkerTransport,
    open_ack,
    open_marker,
    open_sync_request,
)

log = logging.getLogger("baton.delivery")

SYNC_REQUEST_EVERY_MS = 1000
SECURE_IN_FLIGHT = 100  # received markers unacked at a time
BACKOFF_TIMEOUTS = 4  # the longest a late standby waits to join again, in ack timeouts


class MarkerBook:
    def __init__(
        self,
        me: str,
        transport: ReplyMarkerTransport,
        ledger: IndexedLedger,
        verify: Verify,
        counters: Counters,
        ack_timeout_ms: float,
        want_in_sync: Callable[[tuple[str, ...]], None],
    ) -> None:
        self.me = me
        self.transport = transport
        self.ledger = ledger
        self.verify = verify
        self.counters = counters
        self.ack_timeout_ms = ack_timeout_ms
        self.want_in_sync = want_in_sync
        self.peers: tuple[MachineEntry, ...] = ()
        self.replicas = Replicas(me)
        self.sent: dict[str, ReplyMarker] = {}  # marker id -> marker, while outstanding
        self.asked: tuple[str, ...] | None = None  # the in-sync set last asked of the lease
        self.asked_at = 0.0
        self.sync_asked_at = -float("inf")
        self.told: set[str] = set()  # keys whose prepared marker went out this term
        self.recorded: set[str] = set()  # keys whose received or prepared marker did
        self.securing: set[str] = set()  # keys told received this term, perhaps unacked
        self.pages: dict[str, int] = {}  # a joiner: the page of its keys expected next
        # a standby late to ack: (no join before this local ms, the back-off it had)
        self.backoff: dict[str, tuple[float, float]] = {}

    # --- the holder ----------------------------------------------------------------

    def tell(
        self,
        entry: LedgerEntry,
        kind: MarkerKind,
        epoch: int,
        index: int | None,
        now: float,
        to: Iterable[str] | None = None,
    ) -> None:
        """Tell ``entry``'s marker of ``kind`` to every active peer (or to ``to``); it is
        outstanding for the standbys waited on until they ack it, whether or not this
        machine knows them as members yet (a term may start before its roster arrives,
        and a standby the store may name must ack every marker)."""
        try:
            marker = marker_for(entry, kind, max(1, epoch), index)
        except (MarkerRefused, LedgerError) as exc:  # e.g. a text no peer would accept
            self.counters.inc("marker.unbuildable")
            log.error("no %s marker for %s: %s", kind, entry.key, exc.detail)
            return
        mid = marker_id(kind, entry.key, index)
        if kind == "prepared":
            self.told.add(entry.key)
        if kind != "committed":
            self.recorded.add(entry.key)
        reach = {p.machine_id for p in self.peers} | self.replicas.wait_set
        targets = reach if to is None else reach & set(to)
        for peer in sorted(targets):
            self._push(peer, mid, marker, now)

    def _push(self, peer: str, mid: str, marker: ReplyMarker, now: float) -> None:
        if not self.transport.push(peer, marker):
            self.counters.inc("marker.unsent")
        if peer in self.replicas.wait_set:
            self.sent[mid] = marker
            self.replicas.sent(peer, mid, marker.key, marker.kind, now)

    def retell_in_flight(self, entries: Iterable[LedgerEntry], epoch: int, now: float) -> None:
        """A new term: every standby waited on gets the markers of the replies in flight
        again (an earlier term's, perhaps sent before some of them were in sync)."""
        for entry in entries:
            if entry.state in (LedgerState.PREPARED, LedgerState.COMMITTED):
                self.tell_state(entry, epoch, now, self.replicas.wait_set)

    def tell_state(
        self, entry: LedgerEntry, epoch: int, now: float, to: Iterable[str] | None = None
    ) -> None:
        """Markers that bring a standby to what the ledger holds for ``entry``: its
        prepared replies and each committed one; or, not prepared yet, that it is
        recorded, if this term let the cursor pass it (``secure``)."""
        if entry.state.rank < LedgerState.PREPARED.rank:
            if entry.key in self.recorded:
                self.tell(entry, "received", epoch, None, now, to)
            return
        committed = [r.index for r in entry.replies if r.committed]
        if entry.state is LedgerState.PREPARED or not entry.replies:
            self.tell(entry, "prepared", epoch, None, now, to)
        for index in committed:
            self.tell(entry, "committed", epoch, index, now, to)

    def blocking(self, entry: LedgerEntry, epoch: int, now: float) -> bool:
        """Must ``entry``'s replies wait? Yes while a bound standby has not acked its
        prepared marker; and if this term has not told it yet (the entry was prepared
        by an earlier term, or by another machine's marker), it is told now first."""
        if entry.key not in self.told:
            self.tell_state(entry, epoch, now, self.replicas.wait_set)
        return bool(self.replicas.blocking(entry.key))

    def secure(self, entries: Iterable[LedgerEntry], epoch: int, now: float) -> None:
        """Tell the standbys waited on that these unanswered entries are recorded: once
        they ack, the channel cursor may pass them (a takeover will find them). Oldest
        first, at most SECURE_IN_FLIGHT unacked at a time: a backlog after a takeover
        must not flood the standbys (each marker is a durable write there) past their
        ack timeout."""
        owed = self.replicas.blocked_keys()
        self.securing &= owed
        room = SECURE_IN_FLIGHT - len(self.securing)
        fresh = [
            e
            for e in entries
            if e.key not in self.recorded and e.state.rank < LedgerState.PREPARED.rank
        ]
        for entry in sorted(fresh, key=pending_order)[: max(0, room)]:
            self.tell(entry, "received", epoch, None, now, self.replicas.wait_set)
            self.securing.add(entry.key)

    def secured(self, entries: Iterable[LedgerEntry]) -> frozenset[str]:
        """The keys of ``entries`` that every bound standby holds (told this term,
        acked): the channel cursor may pass them though they are not answered yet. With
        standbys but none bound (all out of sync), none: a forced takeover by one of
        them would not find it, so the channel must deliver it again."""
        if self.peers and not self.replicas.bound:
            return frozenset()
        owed = self.replicas.blocked_keys()
        return frozenset(e.key for e in entries if e.key in self.recorded and e.key not in owed)

    def acked(self, env: Envelope, now: float) -> str | None:
        """A standby acked a marker. The key of its entry if no bound standby owes a
        blocking marker of it any more (its reply may go, the cursor may pass it)."""
        try:
            mid = open_ack(env)
        except MarkerRefused as exc:
            self.counters.inc("marker.refused")
            log.warning("marker ack from %s refused: %s", env.sender, exc.detail)
            return None
        done = self.replicas.acked(env.sender, mid, now)
        if done is None:
            return None
        if not self.replicas.owed(mid):
            self.sent.pop(mid, None)
        self.counters.inc("marker.acked")
        return done.key if done.blocks and not self.replicas.blocking(done.key) else None

    def sync_requested(self, env: Envelope, epoch: int, now: float) -> None:
        """A standby out of sync asks to join: it is waited on from now and gets the
        markers of the keys it names and of every reply in flight."""
        try:
            keys, page, more = open_sync_request(env)
        except MarkerRefused as exc:
            self.counters.inc("marker.refused")
            log.warning("sync request from %s refused: %s", env.sender, exc.detail)
            return
        peer = env.sender
        r = self.replicas
        if peer not in {p.machine_id for p in self.peers}:
            return
        if peer in r.joiners and peer not in r.paging:
            return  # it has sent all its keys; its markers are resent until acked
        if now < self.backoff.get(peer, (0.0, 0.0))[0]:
            return  # it was late lately: a slow standby must not stall replies again soon
        if page not in (0, self.pages.get(peer, 0)):  # a page was lost: await the next round
            self.pages[peer] = 0
            return
        self.pages[peer] = page + 1 if more else 0
        first = peer not in r.joiners
        if not r.join(peer, now, more):
            return
        if first:
            self.counters.inc("sync.joins")
            log.info("sync: %s is catching up", peer)
            done = self.ledger.redeliverable.values()  # the channel may deliver them again
            for entry in [*self.ledger.index.values(), *done]:
                self.tell_state(entry, epoch, now, (peer,))
        for key in keys:
            known = self.ledger.get(key)
            if known is not None:
                self.tell_state(known, epoch, now, (peer,))

    def holder_tick(self, view: LeaseView, now: float) -> bool:
        """The holder, every tick: follow the set the store may name, send outstanding
        markers again, remove laggards, ask the lease for the set earned. True if a
        blocked reply may go on now."""
        before = len(self.replicas.outstanding)
        self.replicas.named_are(view.in_sync)
        for peer, mid in self.replicas.retries(now, self.ack_timeout_ms / 2):
            marker = self.sent.get(mid)
            if marker is not None:
                self.counters.inc("marker.resent")
                self._push(peer, mid, marker, now)
        late = self.replicas.overdue(now, self.ack_timeout_ms)
        for peer in late:
            self.counters.inc("sync.removed")
            log.warning("sync: %s did not ack a reply marker in time; out of sync", peer)
        for peer in self.replicas.late:  # it may ask to join again only after a back-off
            if peer not in late:
                self.counters.inc("sync.dropped")
                log.warning("sync: %s stopped catching up (late to ack); it may ask again", peer)
            delay = self._backoff(peer)
            self.backoff[peer] = (now + delay, delay)
        self.replicas.late.clear()
        for peer in self.replicas.named:
            self.backoff.pop(peer, None)
        wanted = self.replicas.wanted()
        differs = wanted != tuple(sorted(self.replicas.named))
        if differs and (wanted != self.asked or now - self.asked_at >= 1000):
            self.asked, self.asked_at = wanted, now
            self.replicas.asked_for(wanted)  # bound from now: the write may land any time
            self.want_in_sync(wanted)
        live = {m for (_, m) in self.replicas.outstanding}
        for mid in [m for m in self.sent if m not in live]:
            del self.sent[mid]
        return len(self.replicas.outstanding) < before

    def _backoff(self, peer: str) -> float:
        """How long a standby late to ack waits before it may join again: an ack timeout,
        doubling while it keeps failing, at most BACKOFF_TIMEOUTS of them (a standby
        slowed by a busy host must get back in soon, or nothing can fail over)."""
        last = self.backoff.get(peer, (0.0, self.ack_timeout_ms / 2))[1]
        return min(BACKOFF_TIMEOUTS * self.ack_timeout_ms, 2 * last)

    def new_term(self) -> None:
        self.replicas.reset()
        self.sent.clear()
        self.told.clear()
        self.recorded.clear()
        self.securing.clear()
        self.asked = None

    def members_changed(self, peers: tuple[MachineEntry, ...]) -> None:
        active = {p.machine_id for p in peers}
        for peer in self.replicas.wait_set - active:
            self.replicas.leave(peer)
        self.peers = peers

    # --- a standby -----------------------------------------------------------------

    def request_sync(self, view: LeaseView, now: float) -> None:
        """A standby the known record does not name in sync asks the holder to join,
        every second, naming the keys it holds unfinished."""
        holder = view.holder
        if holder is None or holder == self.me or self.me in view.in_sync:
            return
        if now - self.sync_asked_at < SYNC_REQUEST_EVERY_MS:
            return
        self.sync_asked_at = now
        keys = sorted(self.ledger.index)
        self.counters.inc("sync.requests")
        self.transport.request_sync(holder, keys)

    def apply(
        self, env: Envelope, holding: bool, wall_ms: float, holder: str | None
    ) -> LedgerEntry | None:
        """A standby (``holding`` False) applies the marker in ``env`` and acks it; the
        entry if the marker completed it (every reply delivered), else None. A holder
        takes none (a former holder's late marker could make a reply look prepared that
        its standbys in sync never heard of); a standby takes them from any member: a
        lagging view of who holds must not stall the holder's replies, and a late
        marker only tells it more of what may have been sent."""
        members = {p.machine_id: p.identity.signing_public for p in self.peers}
        try:
            if holding:
                raise MarkerRefused(f"{env.sender}'s marker reached the holder")
            marker = open_marker(env, members, self.verify)
            known = self.ledger.get(marker.key) is not None
            entry = self.ledger.apply_marker(marker, wall_ms)
            done = entry.state is LedgerState.COMMITTED and not holding
            if done:
                # every reply is delivered: done here too, so retention can prune it
                entry = self.ledger.ack(entry.key, wall_ms)
        except MarkerRefused as exc:
            self.counters.inc("marker.refused")
            log.warning("marker from %s refused: %s", env.sender, exc.detail)
            return None
        except LedgerError as exc:
            self.counters.inc("marker.failed")
            log.warning("marker from %s not applied: %s", env.sender, exc.detail)
            return None
        self.counters.inc("marker.applied")
        if not known:
            self.counters.inc("marker.unknown_message")
        # durably recorded (each ledger step is one durable transaction): say so
        self.transport.ack_marker(env.sender, marker_id(marker.kind, marker.key, marker.index))
        return entry if done else None
