"""A simulated mesh for the delivery model (tests/unit/test_delivery_model.py): machines
with durable ledgers (the core's pure transitions), a lease oracle that keeps the
in-sync rules, a lossy reordering wire for markers and acks, and a sink that forgives
nothing (no reply keys, no fencing: every send it takes is a message the user sees).

Each machine's delivery follows the DeliveryActor's rules, step for step, with the
core's own decisions (``next_step``, ``after_agent``, ``after_send``, ``after_check``,
``apply_marker``, ``marker_for``): record before the cursor passes, run the agent,
prepare, tell the prepared marker, send only once every standby in the in-sync set has
acked it, check with the sink before sending what may have gone, commit, ack. The glue
is written here again (issue 15 item 2 moves it into ``baton/core`` as one step
function, and this model then drives that function directly).

What the checker allows: a reply the sink took twice only if one of its sends was in
flight when its sender crashed or paused, or it was reported as an ambiguous send.
A clean stop (``baton down``) loses what a crash loses here: the actor records no
result after it stops. The lease is an oracle with the store's rules (a holder acts
only while the record names it; after it, only the record's holder or a standby in
its in-sync set takes over by itself: ``LeaseRecord.may_take_over``), not the lease
core (tests/unit/test_lease_model.py checks that).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from baton.core import ledger as rules
from baton.core.delivery import next_in_topic, next_offset
from baton.core.delivery_steps import (
    AfterAgent,
    AfterCheck,
    AfterSend,
    Next,
    after_agent,
    after_check,
    after_send,
    next_step,
)
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, LedgerState, ReplyMarker
from baton.core.replicas import Replicas, marker_id

MESSAGES = 6
ACK_TIMEOUT_MS = 1000.0


def inbound(n: int) -> InboundMessage:
    return InboundMessage("tg", 100 + n, 1, 1 + n % 2, 500 + n, f"m{n}", "u")


@dataclass
class Env:
    src: str
    dst: str
    marker: ReplyMarker | None = None  # a marker; else an ack of marker id ``acks``
    acks: str | None = None


@dataclass
class Send:
    node: str
    life: int  # the sender's incarnation: a crash loses the send's answer
    key: str
    index: int
    answered: bool = False  # the sender has its answer (a timeout) though it may land


@dataclass
class Node:
    name: str
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)  # durable
    up: bool = True
    paused: bool = False
    life: int = 0
    term: int | None = None
    # what a process knows and loses when it crashes
    mine: set[str] = field(default_factory=set)
    unsure: set[tuple[str, int]] = field(default_factory=set)
    running: set[str] = field(default_factory=set)  # agent runs
    busy: set[str] = field(default_factory=set)  # a send in flight: not worked again
    answers: list[tuple[Send, str | None]] = field(default_factory=list)  # sink's answers
    replicas: Replicas = field(init=False)  # the core's in-sync bookkeeping (a holder)
    markers: dict[str, ReplyMarker] = field(default_factory=dict)  # by id, to resend
    told: set[str] = field(default_factory=set)
    recorded: set[str] = field(default_factory=set)  # told received or prepared, this term
    seen: int = -1  # the highest update this term polled
    polling: int | None = None  # the offset of the long poll in flight

    def forget(self) -> None:
        self.mine, self.unsure, self.running, self.answers = set(), set(), set(), []
        self.busy = set()
        self.replicas, self.markers, self.told = Replicas(self.name), {}, set()
        self.recorded, self.term = set(), None

    def __post_init__(self) -> None:
        self.replicas = Replicas(self.name)


@dataclass
class Lease:
    holder: str | None = None
    epoch: int = 0
    in_sync: frozenset[str] = frozenset()


class DeliverySim:
    def __init__(
        self,
        names: tuple[str, ...] = ("a", "b", "c"),
        wait_for_acks: bool = True,
        wait_for_received: bool = True,
        secure_cursor: bool = True,
    ):
        self.nodes = {n: Node(n) for n in names}
        self.lease = Lease(in_sync=frozenset(names))  # a new mesh: empty ledgers, all in sync
        self.wire: list[Env] = []
        self.sends: list[Send] = []  # on their way to the sink
        self.sink: Counter[tuple[str, int]] = Counter()  # what the user saw
        self.excused: set[tuple[str, int]] = set()  # in flight at a crash or pause
        self.reported: set[tuple[str, int]] = set()  # reported as ambiguous sends
        self.offset = 0  # the channel's confirmed offset (only moves forward)
        self.posted = 0
        self.now = 0.0  # ms, for the ack timeouts
        self.wait_for_acks = wait_for_acks  # False: the mutation (send before the acks)
        # False: the mutation (the cursor passes a message no standby acked as recorded)
        self.wait_for_received = wait_for_received
        self.secure_cursor = secure_cursor  # False: the cursor passes only what is done

    # --- the lease oracle -------------------------------------------------------------

    def acting(self, node: Node) -> bool:
        """May ``node`` act now (its gate open: the lease still names it at its epoch)?"""
        lease = (self.lease.holder, self.lease.epoch)
        return node.up and not node.paused and lease == (node.name, node.term)

    def holder(self) -> Node | None:
        """The machine whose gate is open, if any (at most one: the lease's rules)."""
        acting = [n for n in self.nodes.values() if self.acting(n)]
        assert len(acting) <= 1, f"two holders: {acting}"
        return acting[0] if acting else None

    def may_acquire(self, node: Node) -> bool:
        holder = self.nodes.get(self.lease.holder or "")
        alive = holder is not None and holder.up and not holder.paused
        if not node.up or node.paused or (alive and holder is not node):
            return False
        return self.lease.holder in (None, node.name) or node.name in self.lease.in_sync

    def acquire(self, node: Node) -> None:
        """The store's CAS: the next epoch, the old set less the new holder (its heirs)."""
        self.lease = Lease(node.name, self.lease.epoch + 1, self.lease.in_sync - {node.name})
        node.term, node.markers, node.told, node.recorded = self.lease.epoch, {}, set(), set()
        node.replicas.reset()
        node.replicas.named_are(self.lease.in_sync)
        node.seen, node.polling = -1, None  # the cursor passes only what this term saw
        for entry in self._pending(node):  # a new term tells the replies in flight again
            if entry.state.rank >= LedgerState.PREPARED.rank:
                self._tell_state(node, entry, self._others(node))

    # --- the holder -------------------------------------------------------------------

    def post(self) -> None:
        if self.posted < MESSAGES:
            self.posted += 1

    def poll(self, node: Node) -> None:
        """A long poll returns: it went out with the cursor as it was when the one before
        returned (that much is confirmed now: the channel forgets what is below it) and
        brings the rest; the next goes out with the cursor as it is now."""
        if not self.acting(node):
            return
        self.offset = max(self.offset, node.polling or 0)
        for n in range(self.posted):
            msg = inbound(n)
            if msg.update_id >= self.offset:
                node.seen = max(node.seen, msg.update_id)
                if msg.key not in node.ledger:
                    node.ledger[msg.key] = LedgerEntry.of(msg, 0.0)
        secured = self._secured(node)
        ids = [e.update_id for e in node.ledger.values() if not e.done and e.key not in secured]
        node.polling = next_offset(ids, None if node.seen < 0 else node.seen)

    def work(self, node: Node) -> None:
        """The next step on every topic's oldest pending message whose topic waits on
        no job (the DeliveryActor's ``_pump``)."""
        if not self.acting(node):
            return
        for entry in next_in_topic(self._pending(node)).values():
            if entry.key not in node.running | node.busy:
                self._step(node, entry)

    def _step(self, node: Node, entry: LedgerEntry) -> None:
        unsure = {i for (k, i) in node.unsure if k == entry.key}
        step, index = next_step(
            entry,
            ingress_stopped=False,
            retries=1,
            held=False,
            mine=entry.key in node.mine,
            unsure=unsure,
        )
        if step in (Next.SEND, Next.CHECK) and self._blocking(node, entry):
            return
        assert node.term is not None
        match step:
            case Next.RUN_AGENT:
                node.ledger[entry.key] = rules.begin(entry, 0.0)
                node.running.add(entry.key)
            case Next.SEND:
                assert index is not None
                node.unsure.add((entry.key, index))
                node.busy.add(entry.key)
                self.sends.append(Send(node.name, node.life, entry.key, index))
            case Next.CHECK:  # a sink without reply keys cannot say
                assert index is not None
                step_ = after_check(True, False, None, "resend")
                assert step_ is AfterCheck.AMBIGUOUS_SEND
                self.reported.add((entry.key, index))
                node.unsure.discard((entry.key, index))
                node.mine.add(entry.key)
                self._step(node, entry)  # and sent again (policy resend)
            case Next.ACK:
                node.ledger[entry.key] = rules.ack(entry, 0.0)
                node.mine.discard(entry.key)

    def agent_done(self, node: Node, pick: int) -> None:
        if not node.running:
            return
        key = sorted(node.running)[pick % len(node.running)]
        node.running.discard(key)
        entry = node.ledger[key]
        pending = entry.state.rank <= LedgerState.PROCESSING.rank
        if after_agent(True, self.acting(node), pending, True) is not AfterAgent.PREPARE:
            return
        assert node.term is not None
        entry = node.ledger[key] = rules.prepare(entry, (f"re {entry.text}",), node.term, 0.0)
        if entry.prepared_epoch == node.term:
            node.mine.add(key)
        self._tell(node, entry, "prepared", None, self._others(node))
        self._step(node, entry)  # a prepared entry always starts a send or a check

    def answer(self, node: Node) -> None:
        """The holder reads the sink's answers (the DeliveryResults' ``_send_done``)."""
        answers, node.answers = node.answers, []
        for send, status in answers:
            node.busy.discard(send.key)
            error = None if status else "timed out"
            step = after_send(self.acting(node), status, error, False, 0.0)
            if step is AfterSend.COMMIT:
                self._commit(node, send.key, send.index)
                if self.acting(node):
                    self._step(node, node.ledger[send.key])  # the next reply, or the ack
            elif step is not AfterSend.UNKNOWN:  # (ignored: another term's, delivered nothing)
                node.unsure.discard((send.key, send.index))

    def tick(self, node: Node, advance_ms: float) -> None:
        """Time passes; the holder's tick (MarkerBook.holder_tick): markers unacked for
        half an ack timeout go again, a bound standby late with a prepared ack and a
        joiner stalled are taken out, and the set the standbys earned is written to
        the store (one CAS here), which the holder then follows."""
        self.now += advance_ms
        if not self.acting(node):
            return
        r = node.replicas
        r.named_are(self.lease.in_sync)
        for peer, mid in r.retries(self.now, ACK_TIMEOUT_MS / 2):
            self.wire.append(Env(node.name, peer, node.markers[mid]))
            r.sent(peer, mid, node.markers[mid].key, node.markers[mid].kind, self.now)
        waited = tuple(sorted(r.wait_set))
        for entry in self._pending(node):  # unanswered: secured once the standbys hold it
            if entry.state.rank < LedgerState.PREPARED.rank and entry.key not in node.recorded:
                self._tell(node, entry, "received", None, waited)
        r.overdue(self.now, ACK_TIMEOUT_MS)
        r.late.clear()
        wanted = r.wanted()
        if set(wanted) != self.lease.in_sync:
            r.asked_for(wanted)
            self.lease = Lease(self.lease.holder, self.lease.epoch, frozenset(wanted))
            r.named_are(self.lease.in_sync)

    def join(self, node: Node, peer: Node) -> None:
        """``peer`` asks to join with the keys it holds unfinished (MarkerBook's
        ``sync_requested``): it gets the markers of those and of every reply in flight,
        and is waited on from now."""
        if not peer.up or peer.paused or peer.name in node.replicas.joiners:
            return  # (a joiner's repeated request changes nothing)
        if not node.replicas.join(peer.name, self.now):
            return
        theirs = {e.key for e in peer.ledger.values() if not e.done}
        for key, entry in node.ledger.items():
            in_flight = entry.state in (LedgerState.PREPARED, LedgerState.COMMITTED)
            if in_flight or key in theirs:
                self._tell_state(node, entry, (peer.name,))

    # --- the wire and the sink --------------------------------------------------------

    def deliver(self, k: int) -> None:
        env = self.wire.pop(k)
        node = self.nodes[env.dst]
        if not node.up or node.paused:
            return
        if env.marker is not None:
            if self.acting(node):
                return  # a holder takes no marker
            m = env.marker
            entry = rules.apply_marker(node.ledger.get(m.key), m, 0.0)
            if entry.state is LedgerState.COMMITTED:
                entry = rules.ack(entry, 0.0)  # done here too
            node.ledger[m.key] = entry
            self.wire.append(Env(node.name, env.src, acks=marker_id(m.kind, m.key, m.index)))
        elif env.acks is not None and self.acting(node):
            node.replicas.acked(env.src, env.acks, self.now)

    def sink_takes(self, k: int, answer_lost: bool) -> None:
        send = self.sends.pop(k)
        self.sink[(send.key, send.index)] += 1
        node = self.nodes[send.node]
        if node.life == send.life and not send.answered:
            node.answers.append((send, None if answer_lost else "accepted"))

    def send_times_out(self, k: int) -> None:
        """The sender stops waiting (it may still land: its fate is unknown)."""
        send = self.sends[k]
        node = self.nodes[send.node]
        if node.life == send.life and not send.answered:
            send.answered = True
            node.answers.append((send, None))

    # --- faults -----------------------------------------------------------------------

    def crash(self, node: Node) -> None:
        self._excuse(node)
        node.forget()
        node.life += 1
        node.up = False

    def restart(self, node: Node) -> None:
        node.up = True

    def pause(self, node: Node) -> None:
        self._excuse(node)
        node.paused = True

    def resume(self, node: Node) -> None:
        node.paused = False

    # --- the checks -------------------------------------------------------------------

    def unexcused_doubles(self) -> list[tuple[str, int]]:
        return [
            reply
            for reply, times in self.sink.items()
            if times > 1 and reply not in self.excused | self.reported
        ]

    def unanswered(self) -> list[str]:
        return [inbound(n).key for n in range(self.posted) if not self.sink[(inbound(n).key, 0)]]

    def heal(self, rounds: int = 60) -> None:
        """Everyone up, a reliable wire, everything carried out in order, until every
        message is answered and acked (or ``rounds`` run out)."""
        for node in self.nodes.values():
            node.up, node.paused = True, False
        for _ in range(rounds):
            holder = self.holder()
            if holder is None:
                for node in self.nodes.values():
                    if self.may_acquire(node):
                        self.acquire(node)
                        break
                continue
            self.poll(holder)
            for other in self._others(holder):
                self.join(holder, self.nodes[other])
            while self.wire:
                self.deliver(0)
            while self.sends:
                self.sink_takes(0, False)
            self.answer(holder)
            while holder.running:
                self.agent_done(holder, 0)
            self.work(holder)
            self.tick(holder, ACK_TIMEOUT_MS / 2)
            if not self.unanswered() and not self._pending(holder):
                return

    # --- helpers ----------------------------------------------------------------------

    def _others(self, node: Node) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if n != node.name)

    def _pending(self, node: Node) -> list[LedgerEntry]:
        return sorted((e for e in node.ledger.values() if not e.done), key=rules.pending_order)

    def _blocking(self, node: Node, entry: LedgerEntry) -> bool:
        """A standby in the set has not acked the entry's prepared marker (one this term
        has not told yet is told first)."""
        if entry.key not in node.told:
            self._tell_state(node, entry, self._others(node))
        return self.wait_for_acks and bool(node.replicas.blocking(entry.key))

    def _secured(self, node: Node) -> frozenset[str]:
        """MarkerBook.secured: what every bound standby holds, so the cursor may pass it
        unanswered (with standbys but none bound: nothing)."""
        r = node.replicas
        if not r.bound or not self.secure_cursor:
            return frozenset()
        if not self.wait_for_received:
            return frozenset(node.recorded)
        return frozenset(node.recorded - r.blocked_keys())

    def _tell_state(self, node: Node, entry: LedgerEntry, to: tuple[str, ...]) -> None:
        if entry.state.rank < LedgerState.PREPARED.rank:
            if entry.key in node.recorded:
                self._tell(node, entry, "received", None, to)
            return
        if entry.state is LedgerState.PREPARED or not entry.replies:
            self._tell(node, entry, "prepared", None, to)
        for r in entry.replies:
            if r.committed:
                self._tell(node, entry, "committed", r.index, to)

    def _tell(
        self, node: Node, entry: LedgerEntry, kind: str, index: int | None, to: tuple[str, ...]
    ) -> None:
        assert node.term is not None
        marker = rules.marker_for(entry, kind, node.term, index)  # type: ignore[arg-type]
        if kind == "prepared":
            node.told.add(entry.key)
        if kind != "committed":
            node.recorded.add(entry.key)
        mid = marker_id(kind, entry.key, index)
        node.markers[mid] = marker
        for peer in to:
            self.wire.append(Env(node.name, peer, marker))
            node.replicas.sent(peer, mid, entry.key, kind, self.now)  # if waited on

    def _commit(self, node: Node, key: str, index: int) -> None:
        entry = node.ledger[key] = rules.commit(node.ledger[key], index, None, node.term or 1, 0.0)
        node.unsure.discard((key, index))
        node.mine.add(key)
        if node.term is not None:
            self._tell(node, entry, "committed", index, self._others(node))

    def _excuse(self, node: Node) -> None:
        """Sends of ``node`` in flight (or answered but not yet read) when it crashed or
        paused: the one case a double is allowed (and reported by the checker)."""
        for send in self.sends:
            if send.node == node.name:
                self.excused.add((send.key, send.index))
        for send, _ in node.answers:
            self.excused.add((send.key, send.index))
        for key, index in node.unsure:
            self.excused.add((key, index))
