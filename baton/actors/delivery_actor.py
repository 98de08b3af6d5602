"""DeliveryActor: inbound to reply, exactly once (DESIGN.md section 6, "Inbound to reply").

It owns the MessageProcessingLedger. On the holder it records what the poller brings
(before the channel cursor may pass it), runs the agent on each topic's oldest pending
message, prepares the replies (keys from the ledger key), tells the standbys
(reply-prepared), sends through the FencedOutbox, records and tells each delivered reply
(reply-committed), then acks the message so the cursor passes it. On a standby it
persists the markers the holder sends. Blocking work runs in DeliveryJobs; results come
back as messages, and results of an earlier term are ignored, except that a delivered
reply is always recorded (it is the truth about the sink).

A term is one stretch of holding one epoch (the LeaseGate says which); a new term
resumes every message that is not done: committed replies are skipped; a reply prepared
earlier (or whose send outcome was lost) is checked with the sink before any resend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pykka

from baton.actors.delivery_jobs import REJECTED, DeliveryJobs
from baton.actors.delivery_messages import (
    AgentDone,
    CheckDone,
    GetDelivery,
    GetUserMessage,
    HolderIs,
    Polled,
    PostDone,
    QueueUserMessage,
    SendDone,
)
from baton.actors.lease_actor import MembersChanged
from baton.actors.messages import EnvelopeReceived, Tick
from baton.actors.user_queue import UserQueue
from baton.agents.base import Turn
from baton.channels.base import InboundMessage
from baton.core import delivery
from baton.core.clock import Clock
from baton.core.errors import LedgerError, MarkerRefused
from baton.core.ledger import Ledger, LedgerEntry, LedgerState, marker_for
from baton.core.registry import MachineEntry, Verify
from baton.core.settings import Settings
from baton.gate import LeaseGate
from baton.metrics import Counters
from baton.poller import Cursor
from baton.wire.envelope import Envelope
from baton.wire.marker_transport import ReplyMarkerTransport, open_marker

log = logging.getLogger("baton.delivery")

HISTORY_LIMIT = 1000
PRUNE_EVERY_MS = 60_000
RETRY_UNKNOWN_MS = 500


class DeliveryActor(pykka.ThreadingActor):
    def __init__(
        self,
        me: str,
        settings: Settings,
        ledger: Ledger,
        jobs: DeliveryJobs,
        gate: LeaseGate,
        cursor: Cursor,
        markers: ReplyMarkerTransport,
        verify: Verify,
        clock: Clock,
        counters: Counters,
        rng: Callable[[int], bytes],
    ) -> None:
        super().__init__()
        self.me = me
        self.settings = settings
        self.ledger = ledger
        self.jobs = jobs
        self.gate = gate
        self.cursor = cursor
        self.markers = markers
        self.verify = verify
        self.clock = clock
        self.counters = counters
        self.peers: tuple[MachineEntry, ...] = ()
        self.term: int | None = None
        self.busy: dict[str, str] = {}  # topic -> ledger key being worked on
        self.fresh: set[str] = set()  # prepared in this term, no send of unknown fate
        self.retry_at: dict[str, float] = {}
        self.highest_seen: int | None = None
        self.next_prune = 0.0
        self.queue = UserQueue(me, ledger, jobs, markers, clock, counters, rng)

    def on_start(self) -> None:
        self._publish_cursor()

    def on_stop(self) -> None:
        self.jobs.stop()

    # --- messages --------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case Tick(now_ms=now):
                self._tick(now)
            case Polled(updates=updates):
                self._polled(updates)
            case AgentDone():
                self._agent_done(message)
            case SendDone():
                self._send_done(message)
            case CheckDone():
                self._check_done(message)
            case EnvelopeReceived(envelope=env) if env.type == "marker":
                self._marker(env)
            case EnvelopeReceived(envelope=env):
                self.queue.received(env, self.term is not None)
            case PostDone() | HolderIs():
                self.queue.on(message, self.term is not None)
            case QueueUserMessage(topic=topic, text=text):
                return self.queue.put(topic, text, self.term is not None)
            case GetUserMessage(item_id=item_id):
                return self.queue.status(item_id)
            case MembersChanged(peers=peers):
                self.peers = peers
            case GetDelivery():
                return self._view()
            case _:
                raise TypeError(f"DeliveryActor: unexpected message {message!r}")
        return None

    def _tick(self, now: float) -> None:
        term = self.gate.current(now)
        if term != self.term:
            self._new_term(term)
        if now >= self.next_prune:
            self.next_prune = now + PRUNE_EVERY_MS
            self._prune()
        self.queue.flush(self.term is not None)
        self._pump()

    def _new_term(self, term: int | None) -> None:
        log.info("delivery: %s", f"holding epoch {term}" if term else "standing by")
        self.term = term
        self.busy.clear()
        self.fresh.clear()
        self.retry_at.clear()
        if term is not None:
            self.counters.inc("delivery.terms")
            self._publish_cursor()

    def _prune(self) -> None:
        s = self.settings
        max_age = s.ledger_retention_days * 86_400_000
        pruned = self.ledger.prune(self.clock.wall_s() * 1000, max_age, s.ledger_retention_entries)
        if pruned:
            self.counters.inc("ledger.pruned", pruned)

    # --- inbound ---------------------------------------------------------------------

    def _polled(self, updates: tuple[Any, ...]) -> None:
        wall_ms = self.clock.wall_s() * 1000
        for update in updates:
            seen = self.highest_seen
            self.highest_seen = update.update_id if seen is None else max(seen, update.update_id)
            if isinstance(update, InboundMessage):
                _, new = self.ledger.record(update, wall_ms)
                if new:
                    self.counters.inc("delivery.received")
            else:
                self.counters.inc(f"delivery.skipped.{update.reason.replace(' ', '_')}")
        self._publish_cursor()
        self._pump()

    def _publish_cursor(self) -> None:
        pending = self.ledger.pending()
        offset = delivery.next_offset((e.update_id for e in pending), self.highest_seen)
        self.cursor.publish(offset, bool(pending))

    # --- the pipeline ----------------------------------------------------------------

    def _pump(self) -> None:
        """Start work on every idle topic's oldest pending message; acking a done one
        frees its topic at once, so go round again until nothing moves."""
        moved = True
        while moved and self.term is not None:
            moved = False
            now = self.clock.monotonic_ms()
            for topic, entry in delivery.next_in_topic(self.ledger.pending()).items():
                if topic not in self.busy and self.retry_at.get(entry.key, 0.0) <= now:
                    moved = self._work(entry) or moved

    def _work(self, entry: LedgerEntry) -> bool:
        """Take ``entry`` one step; True if it is done (acked) without waiting for a job."""
        term, retries = self.term, self.settings.agent_retries
        assert term is not None
        if entry.state in (LedgerState.RECEIVED, LedgerState.PROCESSING):
            if delivery.too_large(entry.text):
                self.counters.inc("delivery.too_large")
                self._prepare(entry, (delivery.too_large_reply(entry.text),))
            elif entry.attempts > retries:
                self.counters.inc("delivery.gave_up")
                self._prepare(entry, (delivery.failed_reply(entry.attempts, entry.last_error),))
            else:
                entry = self.ledger.begin(entry.key, self._wall_ms())
                history = [
                    Turn(e.text, tuple(r.text for r in e.replies))
                    for e in self.ledger.history(entry.topic, entry.message_id, HISTORY_LIMIT)
                ]
                self.busy[entry.topic] = entry.key
                self.jobs.agent(term, entry, history)
        elif entry.state is LedgerState.PREPARED:
            index = entry.uncommitted()[0].index
            self.busy[entry.topic] = entry.key
            if entry.key in self.fresh:
                self.jobs.send(term, entry, index)
            else:
                self.jobs.check(term, entry, index)
        elif entry.state is LedgerState.COMMITTED:
            self.ledger.ack(entry.key, self._wall_ms())
            self.counters.inc("delivery.done")
            self._publish_cursor()
            return True
        return False

    def _prepare(self, entry: LedgerEntry, replies: tuple[str, ...]) -> None:
        assert self.term is not None
        entry = self.ledger.prepare(entry.key, replies, self.term, self._wall_ms())
        if entry.prepared_epoch == self.term:
            self.fresh.add(entry.key)
        self._tell_peers(marker_for(entry, "prepared", self.term))
        self._work(entry)  # a prepared entry always starts a send or a check

    def _agent_done(self, done: AgentDone) -> None:
        if done.term != self.term or self.busy.get(self._topic(done.key)) != done.key:
            return  # an earlier term's work: the message stays pending for whoever holds
        topic = self._topic(done.key)
        del self.busy[topic]
        entry = self.ledger.get(done.key)
        if entry is None or entry.state not in (LedgerState.RECEIVED, LedgerState.PROCESSING):
            self._pump()
            return
        if done.replies is None:
            self.counters.inc("delivery.agent_failed")
            entry = self.ledger.fail(done.key, done.error or "unknown", self._wall_ms())
            log.warning("agent failed on %s (attempt %d): %s", done.key, entry.attempts, done.error)
            delay = delivery.retry_delay_ms(entry.attempts)
            self.retry_at[done.key] = self.clock.monotonic_ms() + delay
        else:
            self._prepare(entry, done.replies)
        self._pump()

    def _send_done(self, done: SendDone) -> None:
        ours = done.term == self.term and self.busy.get(self._topic(done.key)) == done.key
        outcome = done.outcome
        if outcome is not None and outcome.status in ("accepted", "repeat"):
            self._commit(done.key, done.index, outcome.message_id, done.epoch or 0)
        elif ours and done.error is not None and done.error.startswith(REJECTED):
            # Refused for good (thread deleted, text refused): sending again cannot help.
            # Recorded as done with no message, logged and counted, so nothing waits on it.
            self.counters.inc("delivery.rejected")
            log.error("%s reply %d cannot be delivered: %s", done.key, done.index, done.error)
            self._commit(done.key, done.index, None, self.term or 0)
        elif ours and done.error not in (None, "not_holder"):
            self.counters.inc("delivery.send_unknown")  # ask the sink before sending again
            self.fresh.discard(done.key)
            self.retry_at[done.key] = self.clock.monotonic_ms() + RETRY_UNKNOWN_MS
        if ours:
            del self.busy[self._topic(done.key)]
            self._pump()

    def _check_done(self, done: CheckDone) -> None:
        if done.term != self.term or self.busy.get(self._topic(done.key)) != done.key:
            return
        topic = self._topic(done.key)
        if done.error is not None:
            del self.busy[topic]
            self.counters.inc("delivery.check_failed")
            self.retry_at[done.key] = self.clock.monotonic_ms() + RETRY_UNKNOWN_MS
            return
        if done.delivered is None:
            self.counters.inc("delivery.ambiguous")
            log.warning("%s reply %d: the channel cannot say if it arrived", done.key, done.index)
        action = delivery.resume(done.delivered, self.settings.ambiguous_policy)
        del self.busy[topic]
        if action == "send":
            self.fresh.add(done.key)
        else:
            self.counters.inc(f"delivery.resumed_{action}")
            self._commit(done.key, done.index, None, self.term or 0)
        self._pump()

    def _commit(self, key: str, index: int, message_id: int | None, epoch: int) -> None:
        entry = self.ledger.commit(key, index, message_id, epoch, self._wall_ms())
        self.counters.inc("delivery.committed")
        self._tell_peers(marker_for(entry, "committed", epoch, index))

    # --- markers ---------------------------------------------------------------------

    def _tell_peers(self, marker: Any) -> None:
        for peer in self.peers:
            if not self.markers.push(peer.machine_id, marker):
                self.counters.inc("marker.unsent")

    def _members(self) -> Mapping[str, bytes]:
        return {p.machine_id: p.identity.signing_public for p in self.peers}

    def _marker(self, env: Envelope) -> None:
        try:
            marker = open_marker(env, self._members(), self.verify)
            known = self.ledger.get(marker.key) is not None
            self.ledger.apply_marker(marker, self._wall_ms())
        except MarkerRefused as exc:
            self.counters.inc("marker.refused")
            log.warning("marker from %s refused: %s", env.sender, exc.detail)
            return
        except LedgerError as exc:
            self.counters.inc("marker.failed")
            log.warning("marker from %s not applied: %s", env.sender, exc.detail)
            return
        self.counters.inc("marker.applied")
        if not known:
            self.counters.inc("marker.unknown_message")

    # --- helpers ---------------------------------------------------------------------

    def _topic(self, key: str) -> str:
        return key.split(":", 2)[1]

    def _wall_ms(self) -> float:
        return self.clock.wall_s() * 1000

    def _view(self) -> dict[str, Any]:
        offset, _pending = self.cursor.read()
        return {
            "channel": self.settings.channel,
            "agent": self.settings.agent,
            "term": self.term,
            "working": len(self.busy),
            "ledger": self.ledger.counts(),
            "queued": len(self.ledger.queue_items()),
            "offset": offset,
        }
