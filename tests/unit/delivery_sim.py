"""A simulated mesh for the delivery model (tests/unit/test_delivery_model.py): each
machine runs the delivery machine itself (baton.core.delivery_machine's ``step``, the
code the DeliveryActor runs) over a durable ledger (the MemoryLedger adapter, which
passes the ledger's contract tests); around them a lease oracle that keeps the in-sync
rules, a lossy reordering wire for markers, acks and sync requests, agent runs, sends
and checks that end in any order, and a sink that forgives nothing (no reply keys, no
fencing: every send it takes is a message the user sees, and it cannot say whether a
reply arrived).

What the sim adds is only what the DeliveryActor's shell and the world do: it carries
out the machine's effects (a ledger write that may fail; jobs; the wire; the lease
write the machine wants; the cursor the next long poll goes out with) and turns what
happens back into events. The outbox refuses a send whose epoch the gate no longer
holds, as the FencedOutbox does.

What the checker allows: a reply the sink took twice only if one of its sends was in
flight when its sender crashed or paused, or it was reported as an ambiguous send (the
machine's log event). A clean stop (``baton down``) loses what a crash loses here: the
actor records no result after it stops. The lease is an oracle with the store's rules
(a holder acts only while the record names it; after it, only the record's holder or a
standby in its in-sync set takes over by itself: ``LeaseRecord.may_take_over``), not
the lease core (tests/unit/test_lease_model.py checks that).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from baton.actors.delivery_actor import persist
from baton.core import delivery_types as ev
from baton.core.delivery_machine import DeliveryState, step
from baton.core.errors import LedgerError
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, LedgerState, ReplyMarker
from baton.stores.ledger_memory import MemoryLedger

MESSAGES = 6
ACK_TIMEOUT_MS = 1000.0


def inbound(n: int) -> InboundMessage:
    return InboundMessage("tg", 100 + n, 1, 1 + n % 2, 500 + n, f"m{n}", "u")


def replies(n: int) -> tuple[str, ...]:
    """The agent's answer to message ``n``: one, two or three parts."""
    return tuple(f"re m{n} ({part})" for part in range(1 + n % 3))


@dataclass
class Env:
    src: str
    dst: str
    marker: ReplyMarker | None = None  # a marker; an ack of marker id ``acks``; or
    acks: str | None = None  # a sync request naming ``keys``
    keys: tuple[str, ...] | None = None


@dataclass
class Job:
    """An agent run, a send or a delivery check of machine ``node``'s incarnation
    ``life`` (a crash loses its answer)."""

    node: str
    life: int
    token: int
    entry: LedgerEntry
    index: int = 0
    epoch: int | None = None
    answered: bool = False  # a send: the sender has its answer (a timeout) though it may land


@dataclass
class Node:
    name: str
    peers: frozenset[str]
    ledger: MemoryLedger = field(default_factory=MemoryLedger)  # durable
    up: bool = True
    paused: bool = False
    life: int = 0
    failing: bool = False  # its next ledger write fails
    policy: str = "resend"  # ambiguous_policy
    state: DeliveryState = field(init=False)  # what the process knows: lost at a crash
    agents: list[Job] = field(default_factory=list)  # agent runs
    answers: list[ev.Event] = field(default_factory=list)  # results not read yet
    cursor: int | None = None  # the offset the machine published last
    polling: int | None = None  # the offset of the long poll in flight
    known: set[tuple[str, int]] = field(default_factory=set)  # replies it read accepted

    def __post_init__(self) -> None:
        self.boot()

    def boot(self) -> None:
        """A new process: its ledger as it is on disk, knowing nothing else."""
        cfg = ev.DeliveryConfig(self.name, 1, self.policy, ACK_TIMEOUT_MS)
        self.state = DeliveryState(cfg, self.ledger.pending())
        self.state.book.members_changed(self.peers)
        self.agents, self.answers, self.cursor, self.polling = [], [], None, None
        self.known = set()


@dataclass
class Lease:
    holder: str | None = None
    epoch: int = 0
    in_sync: frozenset[str] = frozenset()
    life: int = 0  # the holder's incarnation: a restarted machine acquires anew


class DeliverySim:
    def __init__(self, names: tuple[str, ...] = ("a", "b", "c"), policy: str = "resend") -> None:
        self.nodes = {n: Node(n, frozenset(names) - {n}, policy=policy) for n in names}
        self.lease = Lease(in_sync=frozenset(names))  # a new mesh: empty ledgers, all in sync
        self.wire: list[Env] = []
        self.sends: list[Job] = []  # on their way to the sink
        self.sink: Counter[tuple[str, int]] = Counter()  # what the user saw
        self.excused: set[tuple[str, int]] = set()  # in flight at a crash or pause
        self.reported: set[tuple[str, int]] = set()  # reported as ambiguous sends
        self.faults: list[str] = []  # what a machine did that it must never do
        self.offset = 0  # the channel's confirmed offset (only moves forward)
        self.posted = 0
        self.now = 0.0  # ms, local and wall alike

    # --- the lease oracle -------------------------------------------------------------

    def gate(self, node: Node) -> int | None:
        """The epoch ``node``'s LeaseGate lets it act with: the lease names this
        incarnation of it, and it runs (a pause closes it; resumed, it renews)."""
        lease, alive = self.lease, node.up and not node.paused
        named = lease.holder == node.name and lease.life == node.life
        return lease.epoch if alive and named else None

    def acting(self, node: Node) -> bool:
        """Its gate is open and its delivery knows it (it ticked since)."""
        epoch = self.gate(node)
        return epoch is not None and node.state.term == epoch

    def holder(self) -> Node | None:
        acting = [n for n in self.nodes.values() if self.acting(n)]
        assert len(acting) <= 1, f"two holders: {acting}"
        return acting[0] if acting else None

    def may_acquire(self, node: Node) -> bool:
        if not node.up or node.paused or self.gate(node) is not None:
            return False
        if any(self.gate(other) is not None for other in self.nodes.values()):
            return False
        return self.lease.holder in (None, node.name) or node.name in self.lease.in_sync

    def acquire(self, node: Node) -> None:
        """The store's CAS: the next epoch, the old set less the new holder (its heirs);
        the new holder's delivery hears of it at once (LeaseChanged ticks it)."""
        in_sync = self.lease.in_sync - {node.name}
        self.lease = Lease(node.name, self.lease.epoch + 1, in_sync, node.life)
        self.tick(node, 0.0)

    # --- the machines' events ---------------------------------------------------------

    def at(self) -> ev.At:
        return ev.At(self.now, self.now)

    def feed(self, node: Node, event: ev.Event) -> None:
        """``event`` into ``node``'s delivery machine; its effects carried out in order,
        as the DeliveryActor does."""
        node.state, effects = step(node.state, event)
        before, writes, after = ev.group_commit(effects)
        for effect in before:
            self._carry_out(node, effect)
        if writes:
            try:
                self._persist(node, writes)
            except LedgerError as exc:
                dropped = tuple(effects[effects.index(writes[0]) + 1 :])
                self.feed(node, ev.LedgerFailed(self.at(), writes[0], exc.detail, dropped))
                return
        for effect in after:
            self._carry_out(node, effect)

    def _persist(self, node: Node, writes: list[ev.Persist]) -> None:
        """One transaction, as the actor's: the model's disk fails it at the last write
        (the ones before it were taken back)."""
        with node.ledger.batch():
            for n, effect in enumerate(writes):
                if node.failing and n == len(writes) - 1:
                    node.failing = False
                    raise LedgerError("disk I/O error (the model's)")
                stored = persist(node.ledger, effect)
                assert stored == effect.entry, f"the machine and its ledger differ: {effect}"

    def _carry_out(self, node: Node, effect: ev.Effect) -> None:
        match effect:
            case ev.StartAgent(token=token, entry=entry, epoch=epoch):
                node.agents.append(Job(node.name, node.life, token, entry, epoch=epoch))
            case ev.Send(token=token, entry=entry, index=index):
                if (entry.key, index) in node.known:
                    self.faults.append(f"{node.name} sent {entry.key} {index} it knew delivered")
                job = Job(node.name, node.life, token, entry, index, node.state.term)
                if self.gate(node) != job.epoch:  # the FencedOutbox: not holding
                    node.answers.append(self._sent(job, None, "not_holder"))
                else:
                    self.sends.append(job)
            case ev.Check(token=token, entry=entry, index=index):  # the sink cannot say
                node.answers.append(ev.CheckDone(self.at(), token, entry.key, index, None))
            case ev.PushMarker(to=to, marker=marker):
                self.wire.append(Env(node.name, to, marker))
            case ev.AckMarker(to=to, marker_id=mid):
                self.wire.append(Env(node.name, to, acks=mid))
            case ev.RequestSync(to=to, keys=keys):
                self.wire.append(Env(node.name, to, keys=keys))
            case ev.WantInSync(in_sync=in_sync) if self.gate(node) is not None:
                lease = self.lease  # one CAS
                self.lease = Lease(lease.holder, lease.epoch, frozenset(in_sync), lease.life)
            case ev.PublishCursor(offset=offset):
                node.cursor = offset
            case ev.Log(event=event) if event and event.get("kind") == "ambiguous_send":
                self.reported.add((event["key"], event["index"]))
            case ev.Reload():
                self.feed(node, ev.Reloaded(self.at(), tuple(node.ledger.pending())))
            case ev.Drained():
                self._check_drained(node)
            case _:
                pass  # counts, other logs, transcripts, pruning: not modelled

    def _check_drained(self, node: Node) -> None:
        """A handoff goes on only once every reply in flight is delivered and recorded
        (durably: the ledger, not what the process believes)."""
        started = (LedgerState.PREPARED, LedgerState.COMMITTED)
        unfinished = [e.key for e in node.ledger.pending() if e.state in started]
        sending = [s.entry.key for s in self.sends if (s.node, s.life) == (node.name, node.life)]
        if unfinished or sending:
            self.faults.append(f"{node.name} drained with {unfinished} {sending} in flight")

    def _sent(self, job: Job, status: str | None, error: str | None) -> ev.SendDone:
        return ev.SendDone(
            self.at(), job.token, job.entry.key, job.index, job.epoch, status, error=error
        )

    # --- the world's rules ------------------------------------------------------------

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
        msgs = tuple(inbound(n) for n in range(self.posted) if 100 + n >= self.offset)
        stored = {m.key: e for m in msgs if (e := node.ledger.get(m.key)) and e.done}
        highest = max((m.update_id for m in msgs), default=None)
        self.feed(node, ev.Polled(self.at(), msgs, (), highest, stored, self.gate(node)))
        node.polling = node.cursor

    def tick(self, node: Node, advance_ms: float) -> None:
        """Time passes and ``node`` ticks with what its gate and the lease say."""
        self.now += advance_ms
        if not node.up or node.paused:
            return
        lease = self.lease
        may = lease.holder in (None, node.name) or node.name in lease.in_sync
        in_sync = tuple(sorted(lease.in_sync))
        self.feed(node, ev.DeliveryTicked(self.at(), self.gate(node), lease.holder, in_sync, may))

    def agent_done(self, node: Node, pick: int) -> None:
        if not node.agents or not node.up or node.paused:
            return
        job = node.agents.pop(pick % len(node.agents))
        n = job.entry.message_id - 500
        self.feed(node, ev.AgentDone(self.at(), job.token, job.entry.key, replies(n)))

    def answer(self, node: Node) -> None:
        """``node`` reads the results of its sends and checks."""
        if not node.up or node.paused:
            return
        answers, node.answers = node.answers, []
        for result in answers:
            if isinstance(result, ev.SendDone) and result.status == "accepted":
                node.known.add((result.key, result.index))
            self.feed(node, result)

    def ingress(self, node: Node) -> None:
        """A planned handoff stops ``node``'s ingress, or one called off resumes it."""
        if node.up and not node.paused:
            stopped = node.state.ingress_stopped
            self.feed(node, (ev.IngressResumed if stopped else ev.IngressStopped)(self.at()))

    def deliver(self, k: int) -> None:
        env = self.wire.pop(k)
        node = self.nodes[env.dst]
        if not node.up or node.paused:
            return
        if env.marker is not None:
            key = env.marker.key
            stored = None if key in node.state.ledger.index else node.ledger.get(key)
            self.feed(node, ev.MarkerArrived(self.at(), env.src, env.marker, stored))
        elif env.acks is not None:
            self.feed(node, ev.MarkerAckArrived(self.at(), env.src, env.acks))
        elif env.keys is not None:
            index = node.state.ledger.index
            found = {k: node.ledger.get(k) for k in env.keys if k not in index}
            known = {k: e for k, e in found.items() if e is not None}
            self.feed(node, ev.SyncRequested(self.at(), env.src, env.keys, 0, False, known))

    def sink_takes(self, k: int, answer_lost: bool) -> None:
        send = self.sends.pop(k)
        self.sink[(send.entry.key, send.index)] += 1
        node = self.nodes[send.node]
        if node.life == send.life and not send.answered:
            lost = (None, "timed out") if answer_lost else ("accepted", None)
            node.answers.append(self._sent(send, *lost))

    def send_times_out(self, k: int) -> None:
        """The sender stops waiting (it may still land: its fate is unknown)."""
        send = self.sends[k]
        node = self.nodes[send.node]
        if node.life == send.life and not send.answered:
            send.answered = True
            node.answers.append(self._sent(send, None, "timed out"))

    # --- faults -----------------------------------------------------------------------

    def crash(self, node: Node) -> None:
        self._excuse(node)
        node.life += 1
        node.up = False

    def restart(self, node: Node) -> None:
        if not node.up:
            node.up = True
            node.boot()

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

    def unanswered(self) -> list[tuple[str, int]]:
        """Replies the user never saw, but for those reported as ambiguous (the skip
        policy records a reply it cannot check as delivered, and says so)."""
        n_parts = [(inbound(n).key, len(replies(n))) for n in range(self.posted)]
        every = [(key, part) for key, parts in n_parts for part in range(parts)]
        return [r for r in every if not self.sink[r] and r not in self.reported]

    def heal(self, rounds: int = 60) -> None:
        """Everyone up, a reliable wire, everything carried out in order, until every
        message is answered and acked (or ``rounds`` run out)."""
        for node in self.nodes.values():
            self.restart(node)
            node.paused = node.failing = False
            if node.state.ingress_stopped:
                self.ingress(node)  # the handoff is called off
        for _ in range(rounds):
            holder = self.holder()
            if holder is None:
                self._heal_the_lease()
                continue
            self.poll(holder)
            for node in self.nodes.values():
                self.tick(node, 0.0)  # a standby out of sync asks to join
            self._settle()
            self.tick(holder, ACK_TIMEOUT_MS / 2)
            if not self.unanswered() and not holder.ledger.pending():
                return

    def _heal_the_lease(self) -> None:
        gated = [n for n in self.nodes.values() if self.gate(n) is not None]
        for node in gated or [n for n in self.nodes.values() if self.may_acquire(n)][:1]:
            if gated:
                self.tick(node, 0.0)  # it holds: its delivery hears of it
            else:
                self.acquire(node)

    def _settle(self) -> None:
        while self.wire:
            self.deliver(0)
        while self.sends:
            self.sink_takes(0, False)
        for node in self.nodes.values():
            self.answer(node)
            while node.agents:
                self.agent_done(node, 0)

    # --- helpers ----------------------------------------------------------------------

    def _excuse(self, node: Node) -> None:
        """Sends of ``node`` in flight (or answered but not yet read) when it crashed or
        paused: the one case a double is allowed (and reported by the checker)."""
        for send in self.sends:
            if send.node == node.name:
                self.excused.add((send.entry.key, send.index))
        for result in node.answers:
            if isinstance(result, ev.SendDone):
                self.excused.add((result.key, result.index))
        self.excused |= node.state.unsure
