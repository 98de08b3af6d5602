"""DeliveryActor: inbound to reply, exactly once (DESIGN.md section 6, "Inbound to reply").

It owns the MessageProcessingLedger. On the holder it records what the poller brings
(before the channel cursor may pass it), has the LiveTailActor start the agent on each
topic's oldest pending message with the topic's transcript as history, prepares the
replies (keys from the ledger key), tells the standbys (reply-prepared), sends through
the FencedOutbox, records and tells each delivered reply (reply-committed), then acks
the message so the cursor passes it, and tells the LiveTailActor, which adds the
message's turn to the transcript. On a standby it persists the markers the holder
sends. Blocking work runs in DeliveryJobs; results come back as messages, and results
of an earlier term are ignored, except that a delivered reply is always recorded (it
is the truth about the sink).

A term is one stretch of holding one epoch (the LeaseGate says which); a new term
resumes every message that is not done: committed replies are skipped; a reply prepared
earlier (or whose send outcome was lost) is checked with the sink before any resend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from baton.actors.delivery_jobs import DeliveryJobs
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
    StartAgent,
    TurnDone,
    TurnSeen,
)
from baton.actors.delivery_results import DeliveryResults
from baton.actors.handoff_messages import ResumeIngress, StopIngress
from baton.actors.indexed_ledger import IndexedLedger
from baton.actors.lease_actor import MembersChanged
from baton.actors.marker_book import MarkerBook
from baton.actors.messages import EnvelopeReceived, Tick
from baton.actors.user_queue import UserQueue
from baton.channels.base import InboundMessage
from baton.core import delivery
from baton.core.alarms import AlarmBook
from baton.core.clock import Clock
from baton.core.delivery_steps import Next, next_step
from baton.core.errors import LedgerError
from baton.core.ledger import Ledger, LedgerEntry, LedgerState
from baton.core.registry import Verify
from baton.core.settings import Settings
from baton.gate import LeaseGate
from baton.metrics import Counters
from baton.poller import Cursor
from baton.wire.marker_transport import ReplyMarkerTransport

log = logging.getLogger("baton.delivery")

PRUNE_EVERY_MS = 60_000
RETRY_ERROR_MS = 5000


class DeliveryActor(DeliveryResults, pykka.ThreadingActor):
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
        tail: Callable[[StartAgent | TurnDone | TurnSeen], None],
        *,
        want_in_sync: Callable[[tuple[str, ...]], None] = lambda in_sync: None,
    ) -> None:
        super().__init__()
        self.me = me
        self.tail = tail  # tells the LiveTailActor (transcripts, the agent's history)
        self.settings = settings
        self.ledger = IndexedLedger(ledger)
        self.jobs = jobs
        self.gate = gate
        self.cursor = cursor
        # a standby slower than this to record a marker leaves the in-sync set
        ack_timeout = max(2000.0, settings.lease_ttl_ms / 2)
        self.book = MarkerBook(
            me, markers, self.ledger, verify, counters, ack_timeout, want_in_sync
        )
        self.was_in_sync = True  # as a standby, last seen: may this machine take over?
        self.clock = clock
        self.counters = counters
        self.term: int | None = None
        self.busy: dict[str, int] = {}  # topic -> the token of the job it waits on
        self.tokens = 0
        self.last_epoch: int | None = None
        self.fenced_at = 0  # the highest epoch a sink refused as stale
        # Which replies may have reached the sink unrecorded. A process that prepared a
        # message's replies (``mine``) knows every send it started (``unsure`` until its
        # outcome is known); any other prepared reply was perhaps sent by someone else.
        self.mine: set[str] = set()
        self.unsure: set[tuple[str, int]] = set()
        self.retry_at: dict[str, float] = {}
        self.highest_seen: int | None = None
        self.next_prune = 0.0
        self.queue = UserQueue(me, ledger, jobs, markers, clock, counters, rng)
        # A planned handoff stops ingress (no new message, no agent run) and waits for
        # the replies in flight to be delivered (``drain_reply`` is called once).
        self.ingress_stopped = False
        self.drain_reply: Callable[[], None] | None = None
        self.alarms = AlarmBook()
        self.sends_held_until = 0.0  # a 429: no send to the channel before this
        self.cursor_stale = False  # an ack may let the cursor pass a message

    def on_start(self) -> None:
        self._publish_cursor()

    def on_stop(self) -> None:
        self.jobs.stop()

    # --- messages --------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        except LedgerError as exc:
            # The ledger refused a step (a bug, or the disk): the message stays as the
            # ledger has it and is taken up again later; the actor lives on.
            self.counters.inc("delivery.errors")
            log.exception("delivery: %s failed: %s", type(message).__name__, exc.detail)
            key = getattr(message, "key", None)
            if isinstance(key, str):  # (a result frees its topic before it is handled)
                self.retry_at[key] = self.clock.monotonic_ms() + RETRY_ERROR_MS
            if isinstance(message, (QueueUserMessage, GetUserMessage, GetDelivery)):
                raise  # an ask: its caller gets the error
            return None

    def _receive(self, message: Any) -> Any:
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
                holder = self.gate.view().holder
                done = self.book.apply(env, self.term is not None, self._wall_ms(), holder)
                if done is not None:
                    self.tail(TurnSeen(done))  # its turn survives the holder's death
            case EnvelopeReceived(envelope=env) if env.type == "marker_ack":
                freed = self.book.acked(env, self.clock.monotonic_ms())
                if freed is not None:
                    self.cursor_stale = True  # published at the next tick (not per ack)
                    entry = self.ledger.index.get(freed)
                    if entry is not None and entry.state is LedgerState.PREPARED:
                        self._pump()  # its reply may go now
            case EnvelopeReceived(envelope=env) if env.type == "sync_request":
                if self.term is not None:
                    self.book.sync_requested(env, self.term, self.clock.monotonic_ms())
            case EnvelopeReceived(envelope=env):
                self.queue.received(env, self.term is not None)
            case HolderIs():
                self._tick(self.clock.monotonic_ms())  # a new term starts now, not at a tick
                self.queue.on(message, self.term is not None)
            case PostDone():
                self.queue.on(message, self.term is not None)
            case QueueUserMessage(topic=topic, text=text):
                return self.queue.put(topic, text, self.term is not None)
            case GetUserMessage(item_id=item_id):
                return self.queue.status(item_id)
            case MembersChanged(peers=peers):
                self.book.members_changed(peers)
            case GetDelivery():
                return self._view()
            case StopIngress(reply=reply):
                self.ingress_stopped, self.drain_reply = True, reply
            case ResumeIngress():
                self.ingress_stopped, self.drain_reply = False, None
                self._pump()
            case _:
                raise TypeError(f"DeliveryActor: unexpected message {message!r}")
        self._drained()
        return None

    def _drained(self) -> None:
        """A handoff waits until every reply in flight is delivered and recorded: no job
        runs, and no message is prepared or committed but not yet acked."""
        reply = self.drain_reply
        if reply is None or self.busy:
            return
        started = (LedgerState.PREPARED, LedgerState.COMMITTED)
        if not any(e.state in started for e in self.ledger.index.values()):
            self.drain_reply = None
            reply()

    def _tick(self, now: float) -> None:
        epoch = self.gate.current(now)
        if epoch is not None and epoch <= self.fenced_at:
            epoch = None  # a sink refused this epoch: act no more until the lease moves on
        if epoch != self.term:
            self._term_changed(epoch)
        view = self.gate.view()
        if self.term is not None:
            self.book.holder_tick(view, now)
            due = delivery.to_secure(self.ledger.index.values(), self._wall_ms())
            if due:  # told as received: the cursor passes them once the standbys ack
                self.book.secure(due, self.term, now)
            if due or self.cursor_stale:
                self._publish_cursor()
        else:
            self.was_in_sync = view.may_take_over
            self.book.request_sync(view, now)
        if now >= self.next_prune:
            self.next_prune = now + PRUNE_EVERY_MS
            self._prune()
        self.queue.flush(self.term is not None)
        self._pump()

    def _term_changed(self, epoch: int | None) -> None:
        """The gate opened or closed. A new epoch starts afresh: work and results of
        another epoch are no longer ours. The same epoch again (a renewal confirmed just
        after the local deadline) resumes what was in flight."""
        log.info("delivery: %s", f"holding epoch {epoch}" if epoch else "standing by")
        if epoch is not None and epoch != self.last_epoch:
            self.busy.clear()
            self.retry_at.clear()
            self.highest_seen = None  # the cursor passes only what this term has seen
            self.last_epoch = epoch
            self.counters.inc("delivery.terms")
            self._start_term(epoch)
        self.term = epoch
        self.ingress_stopped, self.drain_reply = False, None  # a handoff ends with its term
        self._publish_cursor()

    def _start_term(self, epoch: int) -> None:
        """Every standby the store may name gets the markers of the replies in flight
        (they block until it acks). A term this machine took while out of sync (forced)
        may answer again what others answered: each unfinished message is reported."""
        now = self.clock.monotonic_ms()
        self.book.new_term()
        self.book.replicas.named_are(self.gate.view().in_sync)
        pending = list(self.ledger.index.values())
        self.book.retell_in_flight(pending, epoch, now)
        if not self.was_in_sync:
            for entry in pending:
                self.counters.inc("delivery.out_of_sync_resume")
                detail = f"{entry.key} ({entry.state.value}) may have been answered elsewhere"
                self.alarms.raise_alarm("out_of_sync_resume", detail, self._wall_s())
            if pending:
                log.warning("took over out of sync: %d unfinished messages", len(pending))
        self.was_in_sync = True

    def _prune(self) -> None:
        s = self.settings
        max_age = s.ledger_retention_days * 86_400_000
        pruned = self.ledger.prune(self.clock.wall_s() * 1000, max_age, s.ledger_retention_entries)
        if pruned:
            self.counters.inc("ledger.pruned", pruned)

    # --- inbound ---------------------------------------------------------------------

    def _polled(self, updates: tuple[Any, ...]) -> None:
        if self.ingress_stopped:  # not seen: the cursor stays, the next holder gets them
            return
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
        self.cursor_stale = False
        pending = self.ledger.index.values()
        secured = self.book.secured(pending) if self.term is not None else frozenset()
        offset, waiting = delivery.cursor(pending, secured, self.highest_seen)
        self.cursor.publish(offset, waiting)
        self.ledger.passed(offset)

    # --- the pipeline ----------------------------------------------------------------

    def _pump(self) -> None:
        """Start work on every idle topic's oldest pending message; acking a done one
        frees its topic at once, so go round again until nothing moves."""
        moved = True
        while moved and self.term is not None:
            moved = False
            now = self.clock.monotonic_ms()
            for topic, entry in delivery.next_in_topic(self.ledger.index.values()).items():
                if topic not in self.busy and self.retry_at.get(entry.key, 0.0) <= now:
                    moved = self._work(entry) or moved

    def _work(self, entry: LedgerEntry) -> bool:
        """Take ``entry`` one step; True if it is done (acked) without waiting for a job."""
        now = self.clock.monotonic_ms()
        unsure = {i for (k, i) in self.unsure if k == entry.key}
        step, index = next_step(
            entry,
            ingress_stopped=self.ingress_stopped,
            retries=self.settings.agent_retries,
            held=now < self.sends_held_until,
            mine=entry.key in self.mine,
            unsure=unsure,
        )
        assert self.term is not None
        match step:
            case Next.TOO_LARGE:
                self.counters.inc("delivery.too_large")
                self._prepare(entry, (delivery.too_large_reply(entry.text),))
            case Next.GAVE_UP:
                self.counters.inc("delivery.gave_up")
                self._prepare(entry, (delivery.failed_reply(entry.attempts, entry.last_error),))
            case Next.RUN_AGENT:
                entry = self.ledger.begin(entry.key, self._wall_ms())
                self.tail(StartAgent(self._job(entry), entry, self.term))
            case Next.HELD:
                self.retry_at[entry.key] = self.sends_held_until
            case Next.SEND | Next.CHECK if self.book.blocking(entry, self.term, now):
                pass  # a standby in sync has not recorded the prepared marker yet
            case Next.SEND:
                assert index is not None
                self.unsure.add((entry.key, index))  # until its outcome is known
                self.jobs.send(self._job(entry), entry, index)
            case Next.CHECK:
                assert index is not None
                self.jobs.check(self._job(entry), entry, index)
            case Next.ACK:
                self.ledger.ack(entry.key, self._wall_ms())
                self.tail(TurnDone(entry, self.last_epoch or 1))
                self.retry_at.pop(entry.key, None)
                self.mine.discard(entry.key)
                self.counters.inc("delivery.done")
                self._publish_cursor()
                return True
        return False

    def _job(self, entry: LedgerEntry) -> int:
        """A new job on ``entry``: its topic waits on the job's token alone."""
        self.tokens += 1
        self.busy[entry.topic] = self.tokens
        return self.tokens

    def _ours(self, token: int, key: str) -> bool:
        """Is this the result the topic waits on? If so, the topic is free again."""
        topic = self._topic(key)
        if self.busy.get(topic) != token:
            return False
        del self.busy[topic]
        return True

    def _prepare(self, entry: LedgerEntry, replies: tuple[str, ...]) -> None:
        assert self.term is not None
        parts = delivery.split_replies(replies)  # each part one message at the sink
        entry = self.ledger.prepare(entry.key, parts, self.term, self._wall_ms())
        if entry.prepared_epoch == self.term:
            self.mine.add(entry.key)
        self.book.tell(entry, "prepared", self.term, None, self.clock.monotonic_ms())
        self._work(entry)  # a prepared entry always starts a send or a check

    # --- helpers ---------------------------------------------------------------------

    def _topic(self, key: str) -> str:
        return key.split(":", 2)[1]

    def _wall_ms(self) -> float:
        return self.clock.wall_s() * 1000

    def _wall_s(self) -> float:
        return self.clock.wall_s()

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
            "ingress_stopped": self.ingress_stopped,
            "polling": self.cursor.problem or ("ok" if self.term is not None else "standby"),
            "alarms": self.alarms.recent(),
            "alarm_counts": dict(self.alarms.counts),
        }
