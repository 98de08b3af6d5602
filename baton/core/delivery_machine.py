"""Delivery, decided (sans-IO): ``step(state, event) -> (state, effects)``, as the lease
is (baton.core.lease). Its shell, the DeliveryActor, turns what happens (ticks, polls,
job results, a peer's markers and acks) into events and carries out the effects in
order; the rules are here (docs/DESIGN.md, "Delivery in the core"; the types in
baton.core.delivery_types; the pipeline in baton.core.delivery_pipeline; job results in
baton.core.delivery_outcomes; markers and the in-sync set in baton.core.marker_book).

On the holder: record what the poller brings (before the channel cursor may pass it),
start the agent on each topic's oldest pending message, prepare the replies (keys from
the ledger key), tell the standbys (reply-prepared) and wait until every standby in
sync has recorded it, send, record and tell each delivered reply (reply-committed),
then ack the message so the cursor passes it and its turn joins the transcript. On a
standby: persist the holder's markers and ack them, and ask to join the in-sync set
when the lease does not name it.

Invariants:
- Every ledger step is a ``Persist`` effect, before any effect that depends on it;
  the state's index equals the ledger's pending entries once they are carried out.
- A reply is sent (``Send``) only while holding, after every bound standby acked its
  prepared marker, and only by the process that prepared it or learnt it was not
  delivered; any other prepared reply is checked with the sink first (``Check``).
- A result the topic no longer waits on (another term's job) changes nothing, except a
  delivered send, which is always recorded: it is the truth about the sink.
- A failed ledger write (``LedgerFailed``) stops all work until the pending entries
  are read back (``Reload`` / ``Reloaded``); the term then resumes from them.
"""

from __future__ import annotations

from typing import get_args

from baton.core import delivery
from baton.core.delivery_outcomes import agent_done, check_done, send_done
from baton.core.delivery_pipeline import (
    DeliveryState,
    commit,
    drained,
    publish_cursor,
    pump,
    term_changed,
)
from baton.core.delivery_types import (
    ERROR,
    WARNING,
    AgentDone,
    At,
    Check,
    CheckDone,
    Count,
    DeliveryTicked,
    Drained,
    Effect,
    Event,
    IngressResumed,
    IngressStopped,
    LedgerFailed,
    LedgerOp,
    Log,
    MarkerAckArrived,
    MarkerArrived,
    MembersChanged,
    Persist,
    Polled,
    Prune,
    Reload,
    Reloaded,
    Send,
    SendDone,
    StartAgent,
    SyncRequested,
    TurnSeen,
)
from baton.core.errors import IllegalEvent, LedgerError
from baton.core.ledger import LedgerEntry, LedgerState

PRUNE_EVERY_MS = 60_000
RETRY_ERROR_MS = 5000

__all__ = ["DeliveryState", "step"]

EVENTS = get_args(Event)


def step(s: DeliveryState, event: Event) -> tuple[DeliveryState, list[Effect]]:
    if not isinstance(event, EVENTS):
        raise IllegalEvent(f"not a delivery event: {event!r}")
    out: list[Effect] = []
    try:
        _step(s, event, out)
    except LedgerError as exc:
        # The rules refused a step (a bug): the message stays as the ledger has it and
        # is taken up again later; delivery lives on.
        out.append(Count("delivery.errors"))
        out.append(Log(ERROR, f"delivery: {type(event).__name__} failed: {exc.detail}"))
        key, at = getattr(event, "key", None), getattr(event, "at", None)
        if isinstance(key, str) and isinstance(at, At):
            s.retry_at[key] = at.now + RETRY_ERROR_MS
    drained(s, out)
    return s, out


def _step(s: DeliveryState, event: Event, out: list[Effect]) -> None:
    lasting = (DeliveryTicked, Reloaded, MembersChanged, IngressStopped, IngressResumed)
    if s.reloading and not isinstance(event, lasting):
        _while_reloading(s, event, out)
        return
    match event:
        case DeliveryTicked():
            _tick(s, event, out)
        case Polled():
            _polled(s, event, out)
        case AgentDone():
            agent_done(s, event, out)
        case SendDone():
            send_done(s, event, out)
        case CheckDone():
            check_done(s, event, out)
        case MarkerArrived(at=at, sender=sender, marker=marker, stored=stored):
            if s.holding:  # a former holder's late marker could make a reply look
                # prepared that its standbys in sync never heard of
                out.append(Count("marker.refused"))
                out.append(Log(WARNING, f"marker from {sender} refused: it reached the holder"))
                return
            done = s.book.apply(out, sender, marker, stored, at.wall_ms)
            if done is not None:
                out.append(TurnSeen(done))  # its turn survives the holder's death
        case MarkerAckArrived(at=at, sender=sender, marker_id=mid):
            freed = s.book.acked(out, sender, mid, at.now)
            if freed is not None:
                s.cursor_stale = True  # published at the next tick (not per ack)
                entry = s.ledger.index.get(freed)
                if entry is not None and entry.state is LedgerState.PREPARED:
                    pump(s, at, out)  # its reply may go now
        case SyncRequested(at=at) if s.term is not None:
            page = (event.keys, event.page, event.more)
            s.book.sync_requested(out, event.sender, page, event.stored, epoch=s.term, now=at.now)
        case SyncRequested():
            pass  # a standby asks the holder; this machine stands by
        case MembersChanged(peers=peers):
            s.book.members_changed(peers)
        case IngressStopped():
            s.ingress_stopped, s.drain_asked = True, True
        case IngressResumed(at=at):
            s.ingress_stopped, s.drain_asked = False, False
            pump(s, at, out)
        case LedgerFailed():
            _ledger_failed(s, event, out)
        case Reloaded():
            _reloaded(s, event, out)


def _tick(s: DeliveryState, ev: DeliveryTicked, out: list[Effect]) -> None:
    at, now = ev.at, ev.at.now
    s.in_sync = ev.in_sync
    epoch = ev.epoch
    if epoch is not None and epoch <= s.fenced_at:
        epoch = None  # a sink refused this epoch: act no more until the lease moves on
    if s.reloading:  # a term may end now; one starts only on the ledger read back
        if s.term is not None and epoch != s.term:
            term_changed(s, None, at, out)
        if s.term is None:
            s.was_in_sync = ev.may_take_over
        out.append(Reload())
        return
    if epoch != s.term:
        term_changed(s, epoch, at, out)
    if s.term is not None:
        s.book.holder_tick(out, ev.in_sync, now)
        due = delivery.to_secure(s.ledger.index.values(), at.wall_ms)
        if due:  # told as received: the cursor passes them once the standbys ack
            s.book.secure(out, due, s.term, now)
        if due or s.cursor_stale:
            publish_cursor(s, out)
    else:
        s.was_in_sync = ev.may_take_over
        s.book.request_sync(out, ev.holder, ev.in_sync, now)
    if now >= s.next_prune:
        s.next_prune = now + PRUNE_EVERY_MS
        out.append(Prune(at.wall_ms, s.cfg.retention_ms, s.cfg.retention_entries))
    pump(s, at, out)


def _polled(s: DeliveryState, ev: Polled, out: list[Effect]) -> None:
    if s.ingress_stopped:  # not seen: the cursor stays, the next holder gets them
        return
    for msg in ev.messages:
        if msg.key in s.ledger.index:
            continue
        stored = ev.stored.get(msg.key)
        if stored is not None:  # done, delivered again: the cursor passes it
            if stored.state is not LedgerState.ACKED:  # the index missed it: a bug
                out.append(Count("delivery.index_missed"))
                text = f"delivery: {msg.key} ({stored.state.value}) was not in the index"
                out.append(Log(ERROR, text))
            s.ledger.keep(stored)
            continue
        entry = LedgerEntry.of(msg, ev.at.wall_ms)
        s.ledger.step(out, LedgerOp.RECORD, entry, msg, ev.at.wall_ms)
        out.append(Count("delivery.received"))
    for reason in ev.skipped:
        out.append(Count(f"delivery.skipped.{reason.replace(' ', '_')}"))
    if ev.highest is not None:
        seen = s.highest_seen
        s.highest_seen = ev.highest if seen is None else max(seen, ev.highest)
    if s.term is not None and ev.epoch in (None, s.term):
        reach = float("inf") if ev.highest is None else ev.highest
        s.covered = reach if s.covered is None else max(s.covered, reach)
    publish_cursor(s, out)
    pump(s, ev.at, out)


def _ledger_failed(s: DeliveryState, ev: LedgerFailed, out: list[Effect]) -> None:
    """A write failed and nothing after it was carried out: the index may be ahead of
    the disk. What the lost effects said is taken back: their jobs never started (their
    topics are free, their sends never went), their markers are owed no more, a
    delivered reply whose record was lost is recorded again once the ledger is back,
    and a drain not said is said later. The channel cursor confirms nothing this term
    has not polled again. Nothing is decided until the ledger reads back."""
    out.append(Count("delivery.errors"))
    key = ev.failed.entry.key
    out.append(Log(ERROR, f"delivery: the ledger write on {key} failed: {ev.detail}"))
    for effect in (ev.failed, *ev.dropped):
        match effect:
            case Persist(op=LedgerOp.COMMIT, args=(key, index, message_id, epoch, _)):
                s.recommit[(key, index)] = (message_id, epoch)
                s.book.forget(key)
            case Persist(entry=entry):
                s.book.forget(entry.key)
            case Send(token=token, entry=entry, index=index):
                s.unsure.discard((entry.key, index))  # it never went
                _free(s, token)
            case StartAgent(token=token) | Check(token=token):
                _free(s, token)
            case Drained():
                s.drain_asked = True  # said once the ledger is back
    s.highest_seen = None
    s.reloading = True  # the next tick reads the ledger back


def _free(s: DeliveryState, token: int) -> None:
    for topic in [t for t, waits_on in s.busy.items() if waits_on == token]:
        del s.busy[topic]


def _reloaded(s: DeliveryState, ev: Reloaded, out: list[Effect]) -> None:
    """The disk's pending entries: the term goes on from them (its markers outstanding
    stay so); replies known delivered are recorded first, then the results that came
    meanwhile are taken, in order."""
    s.ledger.reload(ev.pending)
    s.reloading = False
    out.append(Log(WARNING, f"delivery: the ledger read back ({len(ev.pending)} pending)"))
    recommit, s.recommit = s.recommit, {}
    for (key, index), (message_id, epoch) in sorted(recommit.items()):
        commit(s, key, index, message_id, epoch, at=ev.at, out=out)
    deferred, s.deferred = s.deferred, []
    for event in deferred:
        _step(s, event, out)
    publish_cursor(s, out)
    pump(s, ev.at, out)


def _while_reloading(s: DeliveryState, event: Event, out: list[Effect]) -> None:
    """Nothing is decided on an index that may be ahead of the disk: a job's result
    waits for the ledger to be back (a job does not run twice); what a peer or the
    channel tells comes again by itself (a poll goes out again, markers are sent
    until acked, a standby asks to join every second)."""
    out.append(Count("delivery.deferred"))
    if isinstance(event, (AgentDone, SendDone, CheckDone)):
        s.deferred.append(event)
