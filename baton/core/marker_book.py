"""MarkerBook: the delivery machine's reply markers and in-sync standbys (sans-IO;
docs/DESIGN.md, "Exactly-once replies" and "In-sync standbys (synchronous markers)";
the in-sync rules in baton.core.replicas).

On the holder it tells every active peer a received, reply-prepared or reply-committed
marker (a ``PushMarker`` effect; the shell signs it), keeps each one outstanding until
the standbys the store may name in sync (and the joiners) ack it, sends it again until
they do, says which messages' replies must still wait (``blocking``) and which messages
the channel cursor may pass though unanswered (``secured``: a slow topic holds up no
other), and asks the lease for the in-sync set the standbys have earned
(``WantInSync``): without the laggards, with the joiners that caught up. A standby out
of the set (``request_sync``) asks the holder to join, naming the keys it holds
unfinished; the holder answers with the markers of those keys and of every reply in
flight.

On a standby it applies what the holder tells (the shell checked the signature: an
active member's), persisted to the ledger (which acks an entry once every reply is
committed, so retention prunes standbys' ledgers too); once it is durably applied the
standby acks it. A peer's marker never raises here: what cannot be applied is logged
and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from baton.core.delivery_types import (
    ERROR,
    INFO,
    WARNING,
    AckMarker,
    Count,
    Effect,
    LedgerOp,
    Log,
    PushMarker,
    RequestSync,
    WantInSync,
)
from baton.core.errors import LedgerError, MarkerRefused
from baton.core.ledger import (
    LedgerEntry,
    LedgerState,
    MarkerKind,
    ReplyMarker,
    ack,
    apply_marker,
    marker_for,
    pending_order,
)
from baton.core.ledger_index import LedgerIndex
from baton.core.replicas import Replicas, marker_id

SYNC_REQUEST_EVERY_MS = 1000
SECURE_IN_FLIGHT = 100  # received markers unacked at a time
BACKOFF_TIMEOUTS = 4  # the longest a late standby waits to join again, in ack timeouts
ASK_AGAIN_MS = 1000  # the in-sync set wanted is asked of the lease again this often


class MarkerBook:
    def __init__(self, me: str, ledger: LedgerIndex, ack_timeout_ms: float) -> None:
        self.me = me
        self.ledger = ledger
        self.ack_timeout_ms = ack_timeout_ms
        self.peers: frozenset[str] = frozenset()
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
        out: list[Effect],
        entry: LedgerEntry,
        kind: MarkerKind,
        *,
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
            out.append(Count("marker.unbuildable"))
            out.append(Log(ERROR, f"no {kind} marker for {entry.key}: {exc.detail}"))
            return
        mid = marker_id(kind, entry.key, index)
        if kind == "prepared":
            self.told.add(entry.key)
        if kind != "committed":
            self.recorded.add(entry.key)
        reach = self.peers | self.replicas.wait_set
        targets = reach if to is None else reach & set(to)
        for peer in sorted(targets):
            self._push(out, peer, mid, marker, now)

    def _push(
        self, out: list[Effect], peer: str, mid: str, marker: ReplyMarker, now: float
    ) -> None:
        out.append(PushMarker(peer, marker))
        if peer in self.replicas.wait_set:
            self.sent[mid] = marker
            self.replicas.sent(peer, mid, marker.key, marker.kind, now)

    def retell_in_flight(
        self, out: list[Effect], entries: Iterable[LedgerEntry], epoch: int, now: float
    ) -> None:
        """A new term: every standby waited on gets the markers of the replies in flight
        again (an earlier term's, perhaps sent before some of them were in sync)."""
        for entry in entries:
            if entry.state in (LedgerState.PREPARED, LedgerState.COMMITTED):
                self.tell_state(out, entry, epoch, now, self.replicas.wait_set)

    def tell_state(
        self,
        out: list[Effect],
        entry: LedgerEntry,
        epoch: int,
        now: float,
        to: Iterable[str] | None = None,
    ) -> None:
        """Markers that bring a standby to what the ledger holds for ``entry``: its
        prepared replies and each committed one; or, not prepared yet, that it is
        recorded, if this term let the cursor pass it (``secure``)."""
        if entry.state.rank < LedgerState.PREPARED.rank:
            if entry.key in self.recorded:
                self.tell(out, entry, "received", epoch=epoch, index=None, now=now, to=to)
            return
        committed = [r.index for r in entry.replies if r.committed]
        if entry.state is LedgerState.PREPARED or not entry.replies:
            self.tell(out, entry, "prepared", epoch=epoch, index=None, now=now, to=to)
        for index in committed:
            self.tell(out, entry, "committed", epoch=epoch, index=index, now=now, to=to)

    def blocking(self, out: list[Effect], entry: LedgerEntry, epoch: int, now: float) -> bool:
        """Must ``entry``'s replies wait? Yes while a bound standby has not acked its
        prepared marker; and if this term has not told it yet (the entry was prepared
        by an earlier term, or by another machine's marker), it is told now first."""
        if entry.key not in self.told:
            self.tell_state(out, entry, epoch, now, self.replicas.wait_set)
        return bool(self.replicas.blocking(entry.key))

    def secure(
        self, out: list[Effect], entries: Iterable[LedgerEntry], epoch: int, now: float
    ) -> None:
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
            self.tell(
                out, entry, "received", epoch=epoch, index=None, now=now, to=self.replicas.wait_set
            )
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

    def acked(self, out: list[Effect], sender: str, mid: str, now: float) -> str | None:
        """A standby acked a marker. The key of its entry if no bound standby owes a
        blocking marker of it any more (its reply may go, the cursor may pass it)."""
        done = self.replicas.acked(sender, mid, now)
        if done is None:
            return None
        if not self.replicas.owed(mid):
            self.sent.pop(mid, None)
        out.append(Count("marker.acked"))
        return done.key if done.blocks and not self.replicas.blocking(done.key) else None

    def sync_requested(
        self,
        out: list[Effect],
        peer: str,
        page_of: tuple[tuple[str, ...], int, bool],
        stored: Mapping[str, LedgerEntry],
        *,
        epoch: int,
        now: float,
    ) -> None:
        """A standby out of sync asks to join (a page of its unfinished keys, the page's
        number, whether more follow): it is waited on from now and gets the markers of
        the keys it names and of every reply in flight."""
        keys, page, more = page_of
        r = self.replicas
        if peer not in self.peers:
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
            out.append(Count("sync.joins"))
            out.append(Log(INFO, f"sync: {peer} is catching up"))
            done = self.ledger.redeliverable.values()  # the channel may deliver them again
            for entry in [*self.ledger.index.values(), *done]:
                self.tell_state(out, entry, epoch, now, (peer,))
        for key in keys:
            known = self.ledger.index.get(key) or stored.get(key)
            if known is not None:
                self.tell_state(out, known, epoch, now, (peer,))

    def holder_tick(self, out: list[Effect], in_sync: Iterable[str], now: float) -> None:
        """The holder, every tick: follow the set the store may name, send outstanding
        markers again, remove laggards, ask the lease for the set earned."""
        self.replicas.named_are(in_sync)
        for peer, mid in self.replicas.retries(now, self.ack_timeout_ms / 2):
            marker = self.sent.get(mid)
            if marker is not None:
                out.append(Count("marker.resent"))
                self._push(out, peer, mid, marker, now)
        late = self.replicas.overdue(now, self.ack_timeout_ms)
        for peer in sorted(late):
            out.append(Count("sync.removed"))
            out.append(
                Log(WARNING, f"sync: {peer} did not ack a reply marker in time; out of sync")
            )
        for peer in sorted(self.replicas.late):  # it may ask to join again after a back-off
            if peer not in late:
                out.append(Count("sync.dropped"))
                text = f"sync: {peer} stopped catching up (late to ack); it may ask again"
                out.append(Log(WARNING, text))
            delay = self._backoff(peer)
            self.backoff[peer] = (now + delay, delay)
        self.replicas.late.clear()
        for peer in self.replicas.named:
            self.backoff.pop(peer, None)
        wanted = self.replicas.wanted()
        differs = wanted != tuple(sorted(self.replicas.named))
        if differs and (wanted != self.asked or now - self.asked_at >= ASK_AGAIN_MS):
            self.asked, self.asked_at = wanted, now
            self.replicas.asked_for(wanted)  # bound from now: the write may land any time
            out.append(WantInSync(wanted))
        live = {m for (_, m) in self.replicas.outstanding}
        for mid in [m for m in self.sent if m not in live]:
            del self.sent[mid]

    def _backoff(self, peer: str) -> float:
        """How long a standby late to ack waits before it may join again: an ack timeout,
        doubling while it keeps failing, at most BACKOFF_TIMEOUTS of them (a standby
        slowed by a busy host must get back in soon, or nothing can fail over)."""
        last = self.backoff.get(peer, (0.0, self.ack_timeout_ms / 2))[1]
        return min(BACKOFF_TIMEOUTS * self.ack_timeout_ms, 2 * last)

    def new_term(self, in_sync: Iterable[str]) -> None:
        self.replicas.reset()
        self.replicas.named_are(in_sync)
        self.sent.clear()
        self.told.clear()
        self.recorded.clear()
        self.securing.clear()
        self.asked = None

    def forget(self, key: str) -> None:
        """The markers told about ``key`` this term described a ledger write that
        failed: owed no more, and told again once the entry moves on."""
        self.replicas.forget_key(key)
        for mid in [mid for mid, marker in self.sent.items() if marker.key == key]:
            del self.sent[mid]
        self.told.discard(key)
        self.recorded.discard(key)
        self.securing.discard(key)

    def members_changed(self, peers: frozenset[str]) -> None:
        for peer in self.replicas.wait_set - peers:
            self.replicas.leave(peer)
        self.peers = peers

    # --- a standby -----------------------------------------------------------------

    def request_sync(
        self, out: list[Effect], holder: str | None, in_sync: Iterable[str], now: float
    ) -> None:
        """A standby the known record does not name in sync asks the holder to join,
        every second, naming the keys it holds unfinished."""
        if holder is None or holder == self.me or self.me in in_sync:
            return
        if now - self.sync_asked_at < SYNC_REQUEST_EVERY_MS:
            return
        self.sync_asked_at = now
        out.append(Count("sync.requests"))
        out.append(RequestSync(holder, tuple(sorted(self.ledger.index))))

    def apply(
        self,
        out: list[Effect],
        sender: str,
        marker: ReplyMarker,
        stored: LedgerEntry | None,
        wall_ms: float,
    ) -> LedgerEntry | None:
        """A standby applies ``marker`` and acks it once durable; the entry if the
        marker completed it (every reply delivered), else None."""
        known = self.ledger.index.get(marker.key) or stored
        try:
            entry = apply_marker(known, marker, wall_ms)
            done = entry.state is LedgerState.COMMITTED
            after = ack(entry, wall_ms) if done else entry  # done here too: pruned in time
        except LedgerError as exc:
            out.append(Count("marker.failed"))
            out.append(Log(WARNING, f"marker from {sender} not applied: {exc.detail}"))
            return None
        self.ledger.step(out, LedgerOp.APPLY_MARKER, entry, marker, wall_ms)
        if done:
            self.ledger.step(out, LedgerOp.ACK, after, marker.key, wall_ms)
        out.append(Count("marker.applied"))
        if known is None:
            out.append(Count("marker.unknown_message"))
        # durably recorded (each ledger step is one durable transaction): say so
        out.append(AckMarker(sender, marker_id(marker.kind, marker.key, marker.index)))
        return after if done else None
