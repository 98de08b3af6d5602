"""DeliveryActor: inbound to reply, exactly once (docs/DESIGN.md, "Exactly-once replies").

The shell of the delivery machine (baton.core.delivery_machine, where every decision
is): it turns what happens into the machine's events (a tick with what the LeaseGate
says, a poll, a job's result, a peer's marker, ack or sync request once its envelope
is opened and its signature checked) and carries out the effects in order: ledger
steps on the MessageProcessingLedger (each durable before the next effect; one that
fails stops the rest and is told back), jobs (DeliveryJobs: agent runs through the
LiveTailActor, sends through the FencedOutbox, delivery checks), markers over the
wire, the channel cursor, counters and logs. It also keeps the user queue (``baton
send``), which is not delivery's: UserQueue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pykka

from baton.actors.delivery_jobs import DeliveryJobs
from baton.actors.delivery_messages import (
    AgentDone,
    ApplyMarkers,
    CheckDone,
    GetDelivery,
    GetUserMessage,
    Polled,
    PostDone,
    QueueUserMessage,
    ResumeIngress,
    SendDone,
    StopIngress,
)
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.tail_messages import StartAgent, TurnDone, TurnSeen
from baton.actors.user_queue import UserQueue
from baton.adapters.metrics import Counters
from baton.channels.base import InboundMessage
from baton.core import delivery_types as ev
from baton.core.clock import Clock
from baton.core.delivery import next_in_topic
from baton.core.delivery_machine import DeliveryState, step
from baton.core.errors import LedgerError, MarkerRefused
from baton.core.lease_types import LeaseChanged
from baton.core.ledger import LedgerEntry, MessageProcessingLedger
from baton.core.registry import MachineEntry, Verify
from baton.core.settings import Settings
from baton.holder.gate import LeaseGate
from baton.holder.poller import Cursor
from baton.wire.envelope import Envelope
from baton.wire.marker_transport import (
    ReplyMarkerTransport,
    open_ack,
    open_marker,
    open_sync_request,
)

log = logging.getLogger("baton.delivery")

MARKER_GROUP = 256  # reply markers applied in one ledger transaction, at most


def persist(ledger: MessageProcessingLedger, step: ev.Persist) -> LedgerEntry:
    """Carry out ``step`` on ``ledger`` (the port's method of that name): the entry as
    stored, or LedgerError and nothing changed."""
    stored = getattr(ledger, step.op.value)(*step.args)
    return stored[0] if step.op is ev.LedgerOp.RECORD else stored  # type: ignore[no-any-return]


class DeliveryActor(pykka.ThreadingActor):
    def __init__(
        self,
        me: str,
        *,
        settings: Settings,
        ledger: MessageProcessingLedger,
        jobs: DeliveryJobs,
        gate: LeaseGate,
        cursor: Cursor,
        markers: ReplyMarkerTransport,
        verify: Verify,
        clock: Clock,
        counters: Counters,
        rng: Callable[[int], bytes],
        tail: Callable[[StartAgent | TurnDone | TurnSeen], None],
        want_in_sync: Callable[[tuple[str, ...]], None] = lambda in_sync: None,
    ) -> None:
        super().__init__()
        self.tail = tail  # tells the LiveTailActor (transcripts, the agent's history)
        self.settings = settings
        self.ledger = ledger
        self.jobs = jobs
        self.gate = gate
        self.cursor = cursor
        self.markers = markers
        self.verify = verify
        self.clock = clock
        self.counters = counters
        self.want_in_sync = want_in_sync
        self.state = DeliveryState(ev.DeliveryConfig.of(me, settings), ledger.pending())
        self.peers: dict[str, bytes] = {}  # active members -> their signing keys
        self.queue = UserQueue(
            me,
            ledger=ledger,
            jobs=jobs,
            transport=markers,
            clock=clock,
            counters=counters,
            rng=rng,
        )
        self.drain_reply: Callable[[], None] | None = None  # a handoff waits on it
        self.markers_in: list[Envelope] = []  # reply markers not applied yet

    # --- its resources: the jobs, and the ledger it alone owns --------------------------

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *failure: object) -> None:
        """pykka calls this instead of on_stop when a message raised out of the actor
        (the node's watchdog sees the actor dead and restarts the node)."""
        self._close()

    def _close(self) -> None:
        self.jobs.stop()
        try:
            self.ledger.close()
        except LedgerError as exc:  # what was committed is on disk; nothing more to do
            log.warning("delivery: closing the ledger: %s", exc.detail)

    # --- messages --------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        except LedgerError as exc:
            # The ledger could not be read: the message is taken up again later (a
            # poll comes again, a peer sends again); the actor lives on.
            self.counters.inc("delivery.errors")
            log.exception("delivery: %s failed: %s", type(message).__name__, exc.detail)
            if isinstance(message, (QueueUserMessage, GetUserMessage, GetDelivery)):
                raise  # an ask: its caller gets the error
            return None

    def _receive(self, message: Any) -> Any:
        holding = self.state.holding
        match message:
            case Tick(now_ms=now):
                self._tick(now)
                self.queue.flush(self.state.holding)
            case Polled(updates=updates, epoch=epoch):
                self._run(self._polled(updates, epoch))
            case AgentDone(token=token, key=key, replies=replies, error=error):
                self._run(ev.AgentDone(self._at(), token, key, replies, error))
            case SendDone():
                self._run(self._send_done(message))
            case CheckDone(token=token, key=key, index=index, delivered=delivered, error=error):
                self._run(ev.CheckDone(self._at(), token, key, index, delivered, error))
            case EnvelopeReceived(envelope=env) if env.type == "marker":
                self.markers_in.append(env)
                if len(self.markers_in) == 1:  # the ones that come meanwhile join it
                    self.actor_ref.tell(ApplyMarkers())
            case ApplyMarkers():
                self._apply_markers()
            case EnvelopeReceived(envelope=env) if env.type == "marker_ack":
                self._peer(
                    env, open_ack, lambda mid: ev.MarkerAckArrived(self._at(), env.sender, mid)
                )
            case EnvelopeReceived(envelope=env) if env.type == "sync_request":
                self._peer(env, open_sync_request, lambda page: self._sync_requested(env, page))
            case EnvelopeReceived(envelope=env):
                self.queue.received(env, holding)
            case LeaseChanged():
                self._tick(self.clock.monotonic_ms())  # a new term starts now, not at a tick
                self.queue.on(message, self.state.holding)
            case PostDone():
                self.queue.on(message, holding)
            case QueueUserMessage(topic=topic, text=text):
                return self.queue.put(topic, text, holding)
            case GetUserMessage(item_id=item_id):
                return self.queue.status(item_id)
            case MembersChanged(peers=peers):
                self._members(peers)
            case GetDelivery():
                return self._view()
            case StopIngress(reply=reply):
                self.drain_reply = reply
                self._run(ev.IngressStopped(self._at()))
            case ResumeIngress():
                self.drain_reply = None
                self._run(ev.IngressResumed(self._at()))
            case _:
                raise TypeError(f"DeliveryActor: unexpected message {message!r}")
        return None

    # --- events ----------------------------------------------------------------------

    def _at(self, now: float | None = None) -> ev.At:
        now = self.clock.monotonic_ms() if now is None else now
        return ev.At(now, self.clock.wall_s() * 1000)

    def _tick(self, now: float) -> None:
        view = self.gate.view()
        epoch = self.gate.current(now)
        at = self._at(now)
        self._run(ev.DeliveryTicked(at, epoch, view.holder, view.in_sync, view.may_take_over))

    def _polled(self, updates: Iterable[Any], epoch: int | None) -> ev.Polled:
        messages = tuple(u for u in updates if isinstance(u, InboundMessage))
        skipped = tuple(u.reason for u in updates if not isinstance(u, InboundMessage))
        ids = [u.update_id for u in updates]
        return ev.Polled(
            self._at(),
            messages,
            skipped,
            max(ids) if ids else None,
            self._stored(m.key for m in messages),
            epoch,
        )

    def _send_done(self, done: SendDone) -> ev.SendDone:
        outcome = done.outcome
        return ev.SendDone(
            self._at(),
            done.token,
            done.key,
            done.index,
            done.epoch,
            None if outcome is None else outcome.status,
            None if outcome is None else outcome.message_id,
            done.error,
            done.not_delivered,
            done.retry_after_ms,
        )

    def _apply_markers(self) -> None:
        """The markers that came since the first of them was told (at most MARKER_GROUP):
        stepped one by one, their ledger writes one transaction. A standby's fsync per
        group, not per marker: the holder's replies wait on its acks, and markers queue
        up behind each other under load. A marker lost to a failed write comes again
        (the holder sends it until it is acked)."""
        group, self.markers_in = self.markers_in[:MARKER_GROUP], self.markers_in[MARKER_GROUP:]
        if self.markers_in:
            self.actor_ref.tell(ApplyMarkers())
        self._run_group(self._marker(env) for env in group)

    def _marker(self, env: Envelope) -> ev.Event | None:
        try:
            marker = open_marker(env, self.peers, self.verify)
        except MarkerRefused as exc:
            self.counters.inc("marker.refused")
            log.warning("marker from %s refused: %s", env.sender, exc.detail)
            return None
        holding = self.state.holding  # (a holder refuses it: nothing to read)
        stored = None if holding else self._stored((marker.key,)).get(marker.key)
        return ev.MarkerArrived(self._at(), env.sender, marker, stored)

    def _sync_requested(self, env: Envelope, page: tuple[list[str], int, bool]) -> ev.Event:
        keys, number, more = page
        stored = self._stored(keys) if self.state.holding else {}
        return ev.SyncRequested(self._at(), env.sender, tuple(keys), number, more, stored)

    def _peer(
        self, env: Envelope, opener: Callable[[Envelope], Any], event: Callable[[Any], ev.Event]
    ) -> None:
        """A peer's envelope opened (or refused: logged and counted), then stepped."""
        try:
            opened = opener(env)
        except MarkerRefused as exc:
            self.counters.inc("marker.refused")
            log.warning("%s from %s refused: %s", env.type, env.sender, exc.detail)
            return
        self._run(event(opened))

    def _members(self, peers: tuple[MachineEntry, ...]) -> None:
        self.peers = {p.machine_id: p.identity.signing_public for p in peers}
        self._run(ev.MembersChanged(frozenset(self.peers)))

    def _stored(self, keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """What the ledger holds of ``keys`` that the machine does not hold pending."""
        index, done = self.state.ledger.index, self.state.ledger.redeliverable
        found = {k: done.get(k) or self.ledger.get(k) for k in keys if k not in index}
        return {k: e for k, e in found.items() if e is not None}

    # --- effects ---------------------------------------------------------------------

    def _run(self, event: ev.Event) -> None:
        self.state, effects = step(self.state, event)
        before, writes, after = ev.group_commit(effects)
        for effect in before:
            self._carry_out(effect)
        if writes:
            failure = self._persist(writes)
            if failure is not None:  # none of them is durable: nothing after the first goes
                first = effects.index(writes[0])
                self._run(
                    ev.LedgerFailed(self._at(), writes[0], failure, tuple(effects[first + 1 :]))
                )
                return
        for effect in after:
            self._carry_out(effect)

    def _run_group(self, events: Iterable[ev.Event | None]) -> None:
        """Events stepped inside one ledger transaction, each step's writes carried out
        as it is made (a later event reads what an earlier one wrote), every other
        effect once all are durable, in order. When the transaction fails (a write, or
        a read an event needed) none is durable: as in ``_run``, the effects before the
        first write are carried out and LedgerFailed drops the rest."""
        effects: list[ev.Effect] = []
        written: list[tuple[ev.Persist, LedgerEntry]] = []
        try:
            with self.ledger.batch():
                for event in events:
                    if event is None:
                        continue
                    self.state, more = step(self.state, event)
                    effects += more
                    writes = [e for e in more if isinstance(e, ev.Persist)]
                    written += [(w, persist(self.ledger, w)) for w in writes]
        except LedgerError as exc:
            before, writes, _ = ev.group_commit(effects)
            for effect in before:
                self._carry_out(effect)
            if writes:  # the machine counts and logs it
                first = effects.index(writes[0])
                dropped = tuple(effects[first + 1 :])
                self._run(ev.LedgerFailed(self._at(), writes[0], exc.detail, dropped))
            else:  # a read failed before any write: the markers come again
                self.counters.inc("delivery.errors")
                log.error("delivery: a group of markers failed: %s", exc.detail)
            return
        self._check(written)
        for effect in effects:
            if not isinstance(effect, ev.Persist):
                self._carry_out(effect)

    def _persist(self, writes: list[ev.Persist]) -> str | None:
        """Carry out a step's ledger writes as one transaction; why it failed (nothing
        changed on disk), if it did."""
        try:
            with self.ledger.batch():
                written = [(effect, persist(self.ledger, effect)) for effect in writes]
        except LedgerError as exc:
            return exc.detail
        self._check(written)
        return None

    def _check(self, written: list[tuple[ev.Persist, LedgerEntry]]) -> None:
        for effect, entry in written:
            if entry != effect.entry:  # the port runs the same rules: this is a bug
                self.counters.inc("delivery.diverged")
                log.error("delivery: the ledger holds %r, the machine %r", entry, effect.entry)
                self.state.ledger.keep(entry)

    def _carry_out(self, effect: ev.Effect) -> None:
        match effect:
            case ev.StartAgent() | ev.TurnDone() | ev.TurnSeen():
                self.tail(effect)
            case ev.Send(token=token, entry=entry, index=index):
                self.jobs.send(token, entry, index)
            case ev.Check(token=token, entry=entry, index=index):
                self.jobs.check(token, entry, index)
            case ev.PushMarker(to=to, marker=marker):
                if not self.markers.push(to, marker):
                    self.counters.inc("marker.unsent")
            case ev.AckMarker(to=to, marker_id=mid):
                self.markers.ack_marker(to, mid)
            case ev.RequestSync(to=to, keys=keys):
                self.markers.request_sync(to, list(keys))
            case ev.WantInSync(in_sync=in_sync):
                self.want_in_sync(in_sync)
            case ev.PublishCursor(offset=offset, waiting=waiting):
                self.cursor.publish(offset, waiting)
            case ev.Count(name=name, n=n):
                self.counters.inc(name, n)
            case ev.Log(level=level, text=text, event=event):
                log.log(level, "%s", text, extra=None if event is None else {"event": dict(event)})
            case ev.Prune():
                self._prune(effect)
            case ev.Reload():
                self._reload()
            case ev.Drained():
                reply, self.drain_reply = self.drain_reply, None
                if reply is not None:
                    reply()

    def _prune(self, p: ev.Prune) -> None:
        try:
            pruned = self.ledger.prune(p.wall_ms, p.max_age_ms, p.max_entries)
        except LedgerError as exc:
            self.counters.inc("delivery.errors")
            log.error("delivery: pruning the ledger failed: %s", exc.detail)
            return
        if pruned:
            self.counters.inc("ledger.pruned", pruned)

    def _reload(self) -> None:
        try:
            pending = self.ledger.pending()
        except LedgerError as exc:  # tried again at the next tick
            log.error("delivery: the ledger cannot be read back: %s", exc.detail)
            return
        self._run(ev.Reloaded(self._at(), tuple(pending)))

    # --- status ----------------------------------------------------------------------

    def _waiting_on(self) -> dict[str, str]:
        """Each busy topic's oldest message and its state (at most 16): where a topic
        that answers nothing waits."""
        s = self.state
        first = next_in_topic(s.ledger.index.values())
        busy = sorted(t for t in s.busy if t in first)[:16]
        return {t: f"{first[t].key} {first[t].state.value}" for t in busy}

    def _view(self) -> dict[str, Any]:
        offset, _pending = self.cursor.read()
        s = self.state
        return {
            "channel": self.settings.channel,
            "agent": self.settings.agent,
            "term": s.term,
            "working": len(s.busy),
            "waiting_on": self._waiting_on(),
            "ledger": self.ledger.counts(),
            "queued": len(self.ledger.queue_items()),
            "offset": offset,
            "ingress_stopped": s.ingress_stopped,
            "polling": self.cursor.problem or ("ok" if s.holding else "standby"),
            "alarms": s.alarms.recent(),
            "alarm_counts": dict(s.alarms.counts),
        }
