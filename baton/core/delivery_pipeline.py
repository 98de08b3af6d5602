"""The delivery machine's state and its pipeline (sans-IO; the step function is in
baton.core.delivery_machine): terms, the pump that takes every idle topic's oldest
message a step further, preparing and committing replies, the channel cursor, and the
drain a planned handoff waits on.

A term is one stretch of holding one epoch (the LeaseGate says which); a new term
resumes every message that is not done: committed replies are skipped; a reply prepared
earlier (or whose send outcome was lost) is checked with the sink before any resend.
"""

from __future__ import annotations

from baton.core import delivery
from baton.core import ledger as rules
from baton.core.alarms import AlarmBook
from baton.core.delivery_steps import Next, next_step
from baton.core.delivery_types import (
    INFO,
    WARNING,
    At,
    Check,
    Count,
    DeliveryConfig,
    Drained,
    Effect,
    Event,
    LedgerOp,
    Log,
    PublishCursor,
    Send,
    StartAgent,
    TurnDone,
)
from baton.core.ledger import LedgerEntry, LedgerState
from baton.core.ledger_index import LedgerIndex
from baton.core.marker_book import MarkerBook


class DeliveryState:
    """What one machine's delivery knows: its ledger's pending entries (``ledger``, the
    durable part) and what a process knows and loses when it stops (everything else).
    Mutable and owned by one caller, like baton.core.replicas: ``step`` changes it in
    place."""

    def __init__(self, cfg: DeliveryConfig, pending: list[LedgerEntry]) -> None:
        self.cfg = cfg
        self.ledger = LedgerIndex(pending)
        self.book = MarkerBook(cfg.me, self.ledger, cfg.ack_timeout_ms)
        self.alarms = AlarmBook()
        self.term: int | None = None
        self.last_epoch: int | None = None
        self.fenced_at = 0  # the highest epoch a sink refused as stale
        self.in_sync: tuple[str, ...] = ()  # the lease's in-sync set, as last told
        self.was_in_sync = True  # as a standby, last seen: may this machine take over?
        self.busy: dict[str, int] = {}  # topic -> the token of the job it waits on
        self.tokens = 0
        # Which replies may have reached the sink unrecorded. A process that prepared a
        # message's replies (``mine``) knows every send it started (``unsure`` until its
        # outcome is known); any other prepared reply was perhaps sent by someone else.
        self.mine: set[str] = set()
        self.unsure: set[tuple[str, int]] = set()
        self.retry_at: dict[str, float] = {}
        self.highest_seen: int | None = None
        # The update ids this term's own polls have covered (every one the channel had
        # not confirmed at or below it came with them): None before its first poll,
        # inf after a poll that brought nothing. A message learnt from another holder's
        # markers says nothing of older ones of its topic it never told.
        self.covered: float | None = None
        self.next_prune = 0.0
        # A planned handoff stops ingress (no new message, no agent run) and waits for
        # the replies in flight to be delivered (``Drained`` once).
        self.ingress_stopped = False
        self.drain_asked = False
        self.sends_held_until = 0.0  # a 429: no send to the channel before this
        self.cursor_stale = False  # an ack may let the cursor pass a message
        # A ledger write failed: nothing moves until it is read back; meanwhile the
        # jobs' results wait, and replies known delivered wait to be recorded again.
        self.reloading = False
        self.deferred: list[Event] = []
        self.recommit: dict[tuple[str, int], tuple[int | None, int]] = {}  # -> id, epoch

    @property
    def holding(self) -> bool:
        return self.term is not None


def term_changed(s: DeliveryState, epoch: int | None, at: At, out: list[Effect]) -> None:
    """The gate opened or closed. A new epoch starts afresh: work and results of
    another epoch are no longer ours. The same epoch again (a renewal confirmed just
    after the local deadline) resumes what was in flight."""
    out.append(Log(INFO, f"delivery: {f'holding epoch {epoch}' if epoch else 'standing by'}"))
    if epoch is not None and epoch != s.last_epoch:
        s.busy.clear()
        s.retry_at.clear()
        s.highest_seen = None  # the cursor passes only what this term has seen
        s.covered = None  # and works on what its own polls covered
        s.last_epoch = epoch
        out.append(Count("delivery.terms"))
        start_term(s, epoch, at, out)
    s.term = epoch
    s.ingress_stopped = s.drain_asked = False  # a handoff ends with its term
    publish_cursor(s, out)


def start_term(s: DeliveryState, epoch: int, at: At, out: list[Effect]) -> None:
    """Every standby the store may name gets the markers of the replies in flight
    (they block until it acks). A term this machine took while out of sync (forced)
    may answer again what others answered: each unfinished message is reported."""
    s.book.new_term(s.in_sync)
    pending = list(s.ledger.index.values())
    s.book.retell_in_flight(out, pending, epoch, at.now)
    if not s.was_in_sync:
        for entry in pending:
            out.append(Count("delivery.out_of_sync_resume"))
            detail = f"{entry.key} ({entry.state.value}) may have been answered elsewhere"
            s.alarms.raise_alarm("out_of_sync_resume", detail, at.wall_ms / 1000)
        if pending:
            out.append(Log(WARNING, f"took over out of sync: {len(pending)} unfinished messages"))
    s.was_in_sync = True


def publish_cursor(s: DeliveryState, out: list[Effect]) -> None:
    s.cursor_stale = False
    pending = s.ledger.index.values()
    secured = s.book.secured(pending) if s.holding else frozenset()
    offset, waiting = delivery.cursor(pending, secured, s.highest_seen)
    out.append(PublishCursor(offset, waiting))
    s.ledger.passed(offset)


def drained(s: DeliveryState, out: list[Effect]) -> None:
    """A handoff waits until every reply in flight is delivered and recorded: no job
    runs, and no message is prepared or committed but not yet acked."""
    if not s.drain_asked or s.busy or s.reloading:
        return
    started = (LedgerState.PREPARED, LedgerState.COMMITTED)
    if not any(e.state in started for e in s.ledger.index.values()):
        s.drain_asked = False
        out.append(Drained())


def pump(s: DeliveryState, at: At, out: list[Effect]) -> None:
    """Start work on every idle topic's oldest pending message; acking a done one
    frees its topic at once, so go round again until nothing moves."""
    moved = True
    while moved and s.holding and not s.reloading:
        moved = False
        for topic, entry in delivery.next_in_topic(s.ledger.index.values()).items():
            if topic in s.busy or not covered(s, entry):
                continue  # (an older message of its topic may still be at the channel)
            if s.retry_at.get(entry.key, 0.0) <= at.now:
                moved = work(s, entry, at, out) or moved


def covered(s: DeliveryState, entry: LedgerEntry) -> bool:
    """Has this term polled past ``entry``'s update? Before, an older message of its
    topic that the old holder's markers never told (a push the wire refused, a marker
    that came after the term opened) may still wait at the channel: the first poll of
    the term brings it, and answering ``entry`` first would answer out of order."""
    return entry.update_id is None or (s.covered is not None and entry.update_id <= s.covered)


def work(s: DeliveryState, entry: LedgerEntry, at: At, out: list[Effect]) -> bool:
    """Take ``entry`` one step; True if it is done (acked) without waiting for a job."""
    unsure = {i for (k, i) in s.unsure if k == entry.key}
    step, index = next_step(
        entry,
        ingress_stopped=s.ingress_stopped,
        retries=s.cfg.retries,
        held=at.now < s.sends_held_until,
        mine=entry.key in s.mine,
        unsure=unsure,
    )
    assert s.term is not None
    match step:
        case Next.TOO_LARGE:
            out.append(Count("delivery.too_large"))
            prepare(s, entry, (delivery.too_large_reply(entry.text),), at, out)
        case Next.GAVE_UP:
            out.append(Count("delivery.gave_up"))
            prepare(s, entry, (delivery.failed_reply(entry.attempts, entry.last_error),), at, out)
        case Next.RUN_AGENT:
            entry = s.ledger.step(
                out, LedgerOp.BEGIN, rules.begin(entry, at.wall_ms), entry.key, at.wall_ms
            )
            out.append(StartAgent(job(s, entry), entry, s.term))
        case Next.HELD:
            s.retry_at[entry.key] = s.sends_held_until
        case Next.SEND | Next.CHECK if s.book.blocking(out, entry, s.term, at.now):
            pass  # a standby in sync has not recorded the prepared marker yet
        case Next.SEND:
            assert index is not None
            s.unsure.add((entry.key, index))  # until its outcome is known
            out.append(Send(job(s, entry), entry, index))
        case Next.CHECK:
            assert index is not None
            out.append(Check(job(s, entry), entry, index))
        case Next.ACK:
            s.ledger.step(out, LedgerOp.ACK, rules.ack(entry, at.wall_ms), entry.key, at.wall_ms)
            out.append(TurnDone(entry, s.last_epoch or 1))
            s.retry_at.pop(entry.key, None)
            s.mine.discard(entry.key)
            out.append(Count("delivery.done"))
            publish_cursor(s, out)
            return True
    return False


def job(s: DeliveryState, entry: LedgerEntry) -> int:
    """A new job on ``entry``: its topic waits on the job's token alone."""
    s.tokens += 1
    s.busy[entry.topic] = s.tokens
    return s.tokens


def ours(s: DeliveryState, token: int, key: str) -> bool:
    """Is this the result the topic waits on? If so, the topic is free again."""
    topic = topic_of(key)
    if s.busy.get(topic) != token:
        return False
    del s.busy[topic]
    return True


def prepare(
    s: DeliveryState, entry: LedgerEntry, replies: tuple[str, ...], at: At, out: list[Effect]
) -> None:
    assert s.term is not None
    parts = delivery.split_replies(replies)  # each part one message at the sink
    after = rules.prepare(entry, parts, s.term, at.wall_ms)
    entry = s.ledger.step(out, LedgerOp.PREPARE, after, entry.key, parts, s.term, at.wall_ms)
    if entry.prepared_epoch == s.term:
        s.mine.add(entry.key)
    s.book.tell(out, entry, "prepared", epoch=s.term, index=None, now=at.now)
    work(s, entry, at, out)  # a prepared entry always starts a send or a check


def commit(
    s: DeliveryState,
    key: str,
    index: int,
    message_id: int | None,
    epoch: int,
    *,
    at: At,
    out: list[Effect],
) -> None:
    found = s.ledger.index.get(key)
    if found is None:  # done meanwhile (a standby's marker, or an ack): nothing to record
        return
    after = rules.commit(found, index, message_id, epoch, at.wall_ms)
    entry = s.ledger.step(out, LedgerOp.COMMIT, after, key, index, message_id, epoch, at.wall_ms)
    out.append(Count("delivery.committed"))
    s.book.tell(out, entry, "committed", epoch=epoch, index=index, now=at.now)
    s.unsure.discard((key, index))
    # The replies after this one were never tried: every holder sends a message's
    # replies in order, each only once the one before it is known delivered.
    s.mine.add(key)


def topic_of(key: str) -> str:
    return key.split(":", 2)[1]
