"""The delivery machine (baton.core.delivery_machine), one event at a time: ``step`` is
fed the events its shell would tell it, and the effects it returns (and its state) are
checked. No thread, no actor, no ledger: a ``Persist`` here is taken as done.

The order of the effects is part of the contract (a ``Persist`` is durable before any
effect after it runs), so these tests do look at where an effect stands in the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import pytest

from baton.core import ledger as rules
from baton.core.delivery_machine import DeliveryState, step
from baton.core.delivery_types import (
    ERROR,
    AckMarker,
    AgentDone,
    At,
    Check,
    CheckDone,
    Count,
    DeliveryConfig,
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
    PublishCursor,
    PushMarker,
    Reload,
    Reloaded,
    Send,
    SendDone,
    StartAgent,
    TurnDone,
    TurnSeen,
)
from baton.core.errors import IllegalEvent
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, LedgerState
from baton.core.replicas import marker_id

ME, B = "m_aaaaaaaaaaaaaaaa", "m_bbbbbbbbbbbbbbbb"
WALL = 1_700_000_000_000.0

E = TypeVar("E")


def at(now: float) -> At:
    return At(now, WALL + now)


def inbound(n: int, thread: int = 0) -> InboundMessage:
    return InboundMessage("tg", 100 + n, 1, thread, 500 + n, f"m{n}", "u")


def of(effects: Iterable[Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def persisted(effects: Iterable[Effect], op: LedgerOp | None = None) -> list[Persist]:
    return [e for e in of(effects, Persist) if op is None or e.op is op]


def counted(effects: Iterable[Effect], name: str) -> int:
    return sum(e.n for e in of(effects, Count) if e.name == name)


def position(effects: list[Effect], match: Callable[[Effect], bool]) -> int:
    """Where the first effect ``match`` accepts stands in ``effects``."""
    for n, effect in enumerate(effects):
        if match(effect):
            return n
    raise AssertionError(f"no such effect in {effects}")


def is_persist(op: LedgerOp, key: str) -> Callable[[Effect], bool]:
    return lambda e: isinstance(e, Persist) and e.op is op and e.entry.key == key


class Machine:
    """One machine's DeliveryState, stepped; every effect it returned, in order."""

    def __init__(self, pending: Iterable[LedgerEntry] = (), policy: str = "resend") -> None:
        self.s = DeliveryState(DeliveryConfig(ME, ambiguous_policy=policy), list(pending))
        self.log: list[Effect] = []

    def __call__(self, event: Event) -> list[Effect]:
        self.s, out = step(self.s, event)
        self.log.extend(out)
        return out

    def hold(
        self,
        now: float = 0.0,
        epoch: int = 1,
        in_sync: tuple[str, ...] = (),
        polled: bool = True,
    ) -> list[Effect]:
        """A tick with the gate open at ``epoch``; a term that opens then also polls
        (``polled``: the channel had nothing new), since it works only on what its own
        polls covered."""
        opens = self.s.term != epoch
        out = self(DeliveryTicked(at(now), epoch, ME, in_sync))
        if polled and opens:
            out += self(Polled(at(now), (), epoch=epoch))
        return out

    def poll(
        self, now: float, *msgs: InboundMessage, stored: Mapping[str, LedgerEntry] | None = None
    ) -> list[Effect]:
        highest = max(m.update_id for m in msgs) if msgs else None
        return self(Polled(at(now), msgs, highest=highest, stored=stored or {}))

    def answer(self, now: float, start: StartAgent, *replies: str) -> list[Effect]:
        return self(AgentDone(at(now), start.token, start.entry.key, replies))

    def sent(self, now: float, send: Send, status: str | None = "accepted") -> list[Effect]:
        """``send`` ended: the sink answered ``status`` (None: no answer, a timeout)."""
        key, error = send.entry.key, None if status else "timeout"
        return self(SendDone(at(now), send.token, key, send.index, 1, status, 77, error))

    def rate_limited(self, now: float, send: Send, retry_after_ms: float) -> list[Effect]:
        """``send`` got a 429: nothing was delivered."""
        key = send.entry.key
        return self(
            SendDone(
                at(now), send.token, key, send.index, 1, None, None, "429", True, retry_after_ms
            )
        )


def prepared(msg: InboundMessage, *replies: str, epoch: int = 1) -> LedgerEntry:
    """An entry another process prepared (its replies may have gone out)."""
    return rules.prepare(LedgerEntry.of(msg, WALL), replies, epoch, WALL)


def record_of(msg: InboundMessage) -> Persist:
    """The write that records ``msg`` (as the machine makes it)."""
    return Persist(LedgerOp.RECORD, LedgerEntry.of(msg, WALL), (msg, WALL))


def sending(m: Machine, msg: InboundMessage, now: float = 10.0) -> Send:
    """A holder with no standby: ``msg`` polled, answered ("hi"), its reply on its way."""
    [start] = of(m.poll(now, msg), StartAgent)
    [send] = of(m.answer(now + 10, start, "hi"), Send)
    return send


# --- a holder's term ------------------------------------------------------------------


def test_a_holders_message_is_recorded_run_prepared_sent_committed_and_acked() -> None:
    m, msg = Machine(), inbound(1)
    m.hold()
    assert m.s.holding

    out = m.poll(10, msg)
    record = position(out, is_persist(LedgerOp.RECORD, msg.key))
    [start] = of(out, StartAgent)
    assert record < out.index(start)
    assert (start.entry.state, start.epoch) == (LedgerState.PROCESSING, 1)

    out = m.answer(20, start, "hi")
    prepare = position(out, is_persist(LedgerOp.PREPARE, msg.key))
    [send] = of(out, Send)  # no standby to wait on
    assert prepare < out.index(send)
    assert send.entry.state is LedgerState.PREPARED and send.index == 0
    assert send.entry.replies[0].text == "hi"

    out = m.sent(30, send)
    ops = [p.op for p in persisted(out)]
    assert ops == [LedgerOp.COMMIT, LedgerOp.ACK]
    [done] = of(out, TurnDone)
    assert done.entry.key == msg.key and done.epoch == 1
    assert out.index(persisted(out)[1]) < out.index(done)
    cursor = of(out, PublishCursor)[-1]
    assert cursor.offset is not None and cursor.offset > msg.update_id
    assert not cursor.waiting
    assert m.s.ledger.index == {} and m.s.busy == {}
    assert persisted(out, LedgerOp.COMMIT)[0].entry.replies[0].message_id == 77


def test_with_a_standby_in_sync_a_reply_waits_for_the_ack_of_its_prepared_marker() -> None:
    m, msg = Machine(), inbound(1)
    m(MembersChanged(frozenset({B})))
    m.hold(in_sync=(B,))
    [start] = of(m.poll(10, msg), StartAgent)

    out = m.answer(20, start, "hi")
    [push] = of(out, PushMarker)
    assert (push.to, push.marker.kind, push.marker.key) == (B, "prepared", msg.key)
    assert position(out, is_persist(LedgerOp.PREPARE, msg.key)) < out.index(push)
    assert of(out, Send) == []

    assert of(m.hold(now=30, in_sync=(B,)), Send) == []  # time alone frees nothing
    assert of(m(MarkerAckArrived(at(40), B, marker_id("received", msg.key, None))), Send) == []

    out = m(MarkerAckArrived(at(50), B, marker_id("prepared", msg.key, None)))
    [send] = of(out, Send)
    assert send.entry.key == msg.key

    out = m.sent(60, send)
    [committed] = of(out, PushMarker)
    assert (committed.to, committed.marker.kind, committed.marker.index) == (B, "committed", 0)
    assert [p.op for p in persisted(out)] == [LedgerOp.COMMIT, LedgerOp.ACK]


def test_every_job_and_marker_follows_the_persist_it_depends_on() -> None:
    """Over a whole term (two topics, a standby in sync), each effect that acts on an
    entry comes after the Persist that made the entry what the effect carries."""
    m, first, second = Machine(), inbound(1, thread=1), inbound(2, thread=2)
    m(MembersChanged(frozenset({B})))
    m.hold(in_sync=(B,))
    starts = of(m.poll(10, first, second), StartAgent)
    for n, start in enumerate(starts):
        m.answer(20 + n, start, f"r{n}")
    for n, msg in enumerate((first, second)):
        for send in of(
            m(MarkerAckArrived(at(30 + n), B, marker_id("prepared", msg.key, None))), Send
        ):
            m.sent(40 + n, send)

    durable: dict[str, LedgerEntry] = {}  # key -> its entry as last persisted
    acted = 0
    for effect in m.log:
        match effect:
            case Persist(entry=entry):
                durable[entry.key] = entry
            case StartAgent(entry=entry) | Send(entry=entry) | Check(entry=entry):
                assert durable.get(entry.key) == entry, effect
                acted += 1
            case TurnDone(entry=entry):
                assert durable[entry.key].state is LedgerState.ACKED
                acted += 1
            case PushMarker(marker=marker) if marker.kind != "received":
                entry = durable[marker.key]
                assert entry.state.rank >= LedgerState.PREPARED.rank
                if marker.index is not None:
                    assert entry.replies[marker.index].committed
                acted += 1
    assert acted == 2 * 5  # per message: a run, its prepared marker, a send, committed, done
    assert m.s.ledger.index == {}


# --- a failed ledger write ------------------------------------------------------------


def test_after_a_failed_ledger_write_nothing_moves_until_the_ledger_is_read_back() -> None:
    m, msg, later = Machine(), inbound(1), inbound(2, thread=2)
    m.hold()
    [start] = of(m.poll(10, msg), StartAgent)
    # the shell: its Persist(BEGIN) failed, so the agent never started
    begin = Persist(LedgerOp.BEGIN, start.entry, (msg.key, WALL + 10))
    m(LedgerFailed(at(11), begin, "disk full", dropped=(start,)))
    assert m.s.busy == {}

    work = (StartAgent, Send, Check, Persist)
    for event in (
        Polled(at(20), (later,), highest=later.update_id),
        AgentDone(at(21), start.token, msg.key, ("hi",)),
        IngressResumed(at(22)),
    ):
        out = m(event)
        assert [e for e in out if isinstance(e, work)] == [], event
        deferred = 0 if isinstance(event, IngressResumed) else 1  # a flag: kept
        assert counted(out, "delivery.deferred") == deferred
    assert later.key not in m.s.ledger.index  # not recorded: the cursor did not pass it

    out = m.hold(now=30)
    assert of(out, Reload) == [Reload()]
    assert [e for e in out if isinstance(e, work)] == []

    out = m(Reloaded(at(40), (LedgerEntry.of(msg, WALL),)))  # the disk: still received
    [restart] = of(out, StartAgent)
    assert restart.entry.key == msg.key and restart.entry.attempts == 1
    assert position(out, is_persist(LedgerOp.BEGIN, msg.key)) < out.index(restart)
    assert not m.s.reloading
    assert of(m.hold(now=50), Reload) == []


def test_a_send_delivered_while_the_ledger_reloads_is_committed_once_it_is_back() -> None:
    m, msg, other = Machine(), inbound(1), inbound(2, thread=2)
    m.hold()
    send = sending(m, msg)
    disk = send.entry  # prepared, durably
    m(LedgerFailed(at(30), record_of(other), "disk I/O error"))  # another message's

    out = m.sent(31, send)  # the sink took it
    assert persisted(out) == [] and counted(out, "delivery.deferred") == 1
    assert m.s.busy == {"1/0": send.token}  # its result waits for the ledger

    m.hold(now=40)
    out = m(Reloaded(at(41), (disk,)))
    [commit] = persisted(out, LedgerOp.COMMIT)
    assert commit.entry.key == msg.key and commit.entry.replies[0].committed
    assert [p.op for p in persisted(out)] == [LedgerOp.COMMIT, LedgerOp.ACK]
    assert of(out, Send) == [] and of(out, Check) == []  # never sent twice
    assert m.s.ledger.index == {}


def test_a_tick_that_ends_the_term_while_reloading_lets_nothing_be_sent_after_the_reload() -> None:
    m, msg, other = Machine(), inbound(1), inbound(2, thread=2)
    m(MembersChanged(frozenset({B})))
    m.hold(in_sync=(B,))
    [start] = of(m.poll(10, msg), StartAgent)
    m.answer(20, start, "hi")  # prepared; its send waits for B's ack
    m(LedgerFailed(at(30), record_of(other), "disk I/O error"))

    out = m(
        DeliveryTicked(at(40), None, B, (ME,))
    )  # the lease moved on: B holds, this one is in sync
    assert of(out, Reload) == [Reload()]
    out = m(Reloaded(at(40), (m.s.ledger.index[msg.key],)))  # the shell reads back at once
    assert [e for e in out if isinstance(e, (Send, Check, StartAgent))] == []
    assert not m.s.holding


def test_ingress_resumed_while_the_ledger_reloads_is_not_lost() -> None:
    m, msg, later = Machine(), inbound(1), inbound(2, thread=2)
    m.hold()
    m(IngressStopped(at(5)))
    m(LedgerFailed(at(10), record_of(msg), "disk I/O error"))
    m(IngressResumed(at(11)))  # the handoff was aborted
    m.hold(now=20)
    m(Reloaded(at(21), ()))

    out = m.poll(30, later)
    assert persisted(out, LedgerOp.RECORD) != []
    assert of(out, StartAgent) != []


def test_ingress_stopped_while_the_ledger_reloads_is_not_lost() -> None:
    m, msg, later = Machine(), inbound(1), inbound(2, thread=2)
    m.hold()
    m(LedgerFailed(at(10), record_of(msg), "disk I/O error"))
    m(IngressStopped(at(11)))  # a handoff begins
    m.hold(now=20)
    m(Reloaded(at(21), ()))

    out = m.poll(30, later)
    assert of(out, StartAgent) == []
    assert len(of(m.log, Drained)) == 1


def test_a_reply_whose_commit_was_not_written_is_recorded_after_the_reload_never_sent_again() -> (
    None
):
    m, msg = Machine(), inbound(1)
    m.hold()
    [start] = of(m.poll(10, msg), StartAgent)
    [send] = of(m.answer(20, start, "one", "two", "three"), Send)  # three parts
    assert send.index == 0
    out = m.sent(30, send)  # part 0 arrived; its COMMIT is the write that fails
    [commit] = persisted(out, LedgerOp.COMMIT)
    at_fault = out[out.index(commit) + 1 :]
    assert of(at_fault, Send)  # part 1 was to go next: dropped with the rest
    m(LedgerFailed(at(31), commit, "disk I/O error", tuple(at_fault)))
    m.hold(now=40)

    out = m(Reloaded(at(41), (send.entry,)))  # the disk: prepared, nothing committed
    assert persisted(out)[0].op is LedgerOp.COMMIT and persisted(out)[0].args[1] == 0
    assert persisted(out)[0].entry.replies[0].message_id == 77  # the sink's id kept
    assert [e.index for e in of(out, Send)] == [1]  # part 0 never again; part 1 goes
    assert of(out, Check) == []


@pytest.mark.parametrize("policy", ["resend", "skip"])
def test_a_send_dropped_at_a_failed_write_is_sent_after_the_reload_never_checked(
    policy: str,
) -> None:
    """A reply the machine decided to send, but the shell never sent (an earlier write
    in the same step failed), is not a send of unknown fate: no check, no ambiguity,
    and under skip never recorded as delivered unsent."""
    m, a, b = Machine(policy=policy), inbound(1), inbound(2, thread=2)
    m.hold()
    [start_a, start_b] = of(m.poll(10, a, b), StartAgent)
    out = m.answer(20, start_a, "for a")
    [prepare_a] = persisted(out, LedgerOp.PREPARE)
    m(LedgerFailed(at(21), prepare_a, "disk I/O error", tuple(out[out.index(prepare_a) + 1 :])))
    out = m.answer(22, start_b, "for b")  # deferred until the ledger is back
    assert persisted(out) == [] and m.s.deferred
    m.hold(now=30)
    out = m(Reloaded(at(31), (m.s.ledger.index[b.key], LedgerEntry.of(a, WALL))))
    sends = {e.entry.key: e for e in of(out, Send)}
    assert set(sends) == {b.key}  # b's result taken; a runs again (its reply was lost)
    assert [e.entry.key for e in of(out, StartAgent)] == [a.key]
    # b's Send is dropped at the next failed write, in a step of its own
    failing = Persist(LedgerOp.BEGIN, LedgerEntry.of(inbound(3), WALL), ("x", WALL))
    m(LedgerFailed(at(32), failing, "disk I/O error", (sends[b.key],)))
    m.hold(now=40)
    out = m(Reloaded(at(41), tuple(m.s.ledger.index.values())))
    assert [e.entry.key for e in of(out, Send)] == [b.key] and of(out, Check) == []
    assert counted(m.log, "delivery.ambiguous") == 0


def test_a_drain_said_in_a_step_whose_write_failed_is_said_once_the_ledger_is_back() -> None:
    m, msg = Machine(), inbound(1)
    m.hold()
    send = sending(m, msg)
    m(IngressStopped(at(25)))
    out = m.sent(30, send)  # delivered, committed, acked: drained
    [ack] = persisted(out, LedgerOp.ACK)
    assert of(out, Drained)
    m(LedgerFailed(at(31), ack, "disk I/O error", tuple(out[out.index(ack) + 1 :])))
    assert of(m.hold(now=40), Drained) == []  # not while the ledger is away
    disk = rules.commit(send.entry, 0, 77, 1, WALL + 30)  # committed, not acked
    out = m(Reloaded(at(41), (disk,)))
    assert [p.op for p in persisted(out)] == [LedgerOp.ACK]
    assert len(of(out, Drained)) == 1


# --- markers --------------------------------------------------------------------------


def test_the_holder_refuses_a_peers_marker_and_persists_nothing() -> None:
    m, msg = Machine(), inbound(1)
    m.hold()
    marker = rules.marker_for(prepared(msg, "hi"), "prepared", 1)

    out = m(MarkerArrived(at(10), B, marker, None))
    assert counted(out, "marker.refused") == 1
    assert persisted(out) == [] and of(out, AckMarker) == []
    assert m.s.ledger.index == {}


def test_a_standby_persists_a_marker_before_acking_it_and_sees_the_turn_it_completes() -> None:
    m, msg = Machine(), inbound(1)
    m(DeliveryTicked(at(0), None, B, (ME,)))  # B holds; this machine stands by, in sync
    assert not m.s.holding
    entry = prepared(msg, "hi")

    out = m(MarkerArrived(at(10), B, rules.marker_for(entry, "prepared", 1), None))
    [apply] = persisted(out)
    [ack] = of(out, AckMarker)
    assert apply.op is LedgerOp.APPLY_MARKER and apply.entry.state is LedgerState.PREPARED
    assert out.index(apply) < out.index(ack)
    assert ack == AckMarker(B, marker_id("prepared", msg.key, None))
    assert of(out, TurnSeen) == []
    assert m.s.ledger.index[msg.key].state is LedgerState.PREPARED

    delivered = rules.commit(entry, 0, 77, 1, WALL)
    out = m(MarkerArrived(at(20), B, rules.marker_for(delivered, "committed", 1, 0), None))
    assert [p.op for p in persisted(out)] == [LedgerOp.APPLY_MARKER, LedgerOp.ACK]
    [ack] = of(out, AckMarker)
    assert ack.marker_id == marker_id("committed", msg.key, 0)
    assert out.index(persisted(out)[-1]) < out.index(ack)
    [seen] = of(out, TurnSeen)
    assert seen.entry.key == msg.key and seen.entry.state is LedgerState.ACKED
    assert msg.key not in m.s.ledger.index
    assert of(m.log, Send) == [] and of(m.log, StartAgent) == []


# --- what the channel and the sink say ------------------------------------------------


def test_a_done_message_delivered_again_is_neither_recorded_nor_answered() -> None:
    m, pending, done = Machine(), inbound(1), inbound(2, thread=2)
    m.hold()
    m.poll(10, pending)  # still running: the cursor stays below the done one
    acked = rules.ack(rules.commit(prepared(done, "hi"), 0, 77, 1, WALL), WALL)

    out = m.poll(20, done, stored={done.key: acked})
    assert persisted(out) == [] and of(out, StartAgent) == []
    assert done.key not in m.s.ledger.index
    assert m.s.ledger.redeliverable == {done.key: acked}
    assert of(out, PublishCursor)[-1].offset == pending.update_id


def test_a_new_term_answers_nothing_its_polls_have_not_covered() -> None:
    """A standby learnt 232's reply from the old holder's markers but never 227's (a
    marker lost); 227 is still at the channel. Taking over, it must not answer 232
    before its first poll brings 227: replies in a topic keep their messages' order."""
    older, newer = inbound(1), inbound(2)
    m = Machine([LedgerEntry.of(newer, WALL)])
    assert of(m.hold(polled=False), StartAgent) == []  # the term's first tick: no poll yet
    assert of(m(DeliveryTicked(at(10), 1, ME, ())), StartAgent) == []
    out = m(Polled(at(20), (older, newer), highest=newer.update_id, epoch=1))
    assert [s.entry.key for s in of(out, StartAgent)] == [older.key]


def test_only_a_poll_of_this_term_covers_and_an_empty_one_covers_all() -> None:
    later = inbound(5, thread=2)  # another topic: only coverage holds it back
    m = Machine([LedgerEntry.of(later, WALL)])
    m.hold(epoch=3, polled=False)
    assert of(m(Polled(at(5), (), epoch=2)), StartAgent) == []  # made under an older term
    out = m(Polled(at(6), (inbound(1),), highest=101, epoch=3))
    assert [s.entry.key for s in of(out, StartAgent)] == [inbound(1).key]  # 105 > 101
    m2 = Machine([LedgerEntry.of(later, WALL)])
    m2.hold(epoch=3, polled=False)
    [start] = of(m2(Polled(at(5), (), epoch=3)), StartAgent)  # nothing at the channel
    assert start.entry.key == later.key


def test_a_pending_message_the_index_missed_is_taken_up_and_flagged() -> None:
    """The index equals the ledger's pending entries; one found only on disk when the
    channel delivers it again is a bug, counted and logged, and the message still runs."""
    m, msg = Machine(), inbound(1)
    m.hold()
    stored = rules.begin(LedgerEntry.of(msg, WALL), WALL)

    out = m.poll(20, msg, stored={msg.key: stored})
    assert Count("delivery.index_missed") in out
    assert [log.level for log in of(out, Log)] == [ERROR]
    assert m.s.ledger.index[msg.key].key == msg.key
    assert [start.entry.key for start in of(out, StartAgent)] == [msg.key]


def test_another_terms_send_that_delivered_is_still_committed() -> None:
    m, msg = Machine(), inbound(1)
    m.hold()
    send = sending(m, msg)
    out = m.hold(now=30, epoch=2)  # a new term: its own job on the message
    [check] = of(out, Check)  # the old send's fate is unknown: ask the sink first

    out = m.sent(40, send)  # the old term's send: the sink took it
    [commit] = persisted(out, LedgerOp.COMMIT)
    assert commit.entry.replies[0].committed
    assert of(out, Send) == []
    assert m.s.busy == {"1/0": check.token}  # still waiting on its own check


def test_another_terms_send_that_delivered_nothing_changes_nothing() -> None:
    m, msg = Machine(), inbound(1)
    m.hold()
    send = sending(m, msg)
    m.hold(now=30, epoch=2)
    index, busy = dict(m.s.ledger.index), dict(m.s.busy)

    for done in (
        SendDone(at(40), send.token, msg.key, 0, 1, None, error="timeout"),
        SendDone(at(41), send.token, msg.key, 0, 1, None, not_delivered=True),
        SendDone(at(42), send.token, msg.key, 0, 1, "stale"),
    ):
        assert m(done) == []
    assert m.s.ledger.index == index and m.s.busy == busy and m.s.term == 2


def test_a_429_holds_every_send_back_until_its_retry_after_and_is_never_ambiguous() -> None:
    m, msg, other = Machine(), inbound(1), inbound(2, thread=2)
    m.hold()
    send = sending(m, msg, now=1000)
    [start] = of(m.poll(1030, other), StartAgent)

    out = m.rate_limited(1040, send, retry_after_ms=5000)
    assert counted(out, "delivery.rate_limited") == 1
    assert [a["kind"] for a in m.s.alarms.recent()] == ["rate_limited"]
    assert of(out, Send) == []
    assert of(m.answer(1050, start, "yo"), Send) == []  # the other topic waits too
    assert of(m.hold(now=6039), Send) == []

    out = m.hold(now=6040)
    assert sorted(s.entry.key for s in of(out, Send)) == sorted((msg.key, other.key))
    assert of(m.log, Check) == []  # nothing was delivered: no need to ask
    assert counted(m.log, "delivery.ambiguous") == 0


def test_a_stopped_ingress_says_drained_once_when_every_reply_in_flight_is_acked() -> None:
    m, msg, queued, late = Machine(), inbound(1), inbound(2), inbound(3, thread=3)
    m.hold()
    send = sending(m, msg)
    m.poll(25, queued)  # same topic: waits for msg

    assert of(m(IngressStopped(at(30))), Drained) == []
    out = m.poll(35, late)
    assert persisted(out) == [] and late.key not in m.s.ledger.index

    out = m.sent(40, send)
    assert of(out, Drained) == [Drained()]
    assert of(out, StartAgent) == []  # the queued message waits: ingress is stopped
    m.hold(now=50)
    m.poll(60)
    assert len(of(m.log, Drained)) == 1

    [start] = of(m(IngressResumed(at(70))), StartAgent)  # the handoff was called off
    assert start.entry.key == queued.key
    assert len(of(m.log, Drained)) == 1


def test_a_sink_that_cannot_say_is_reported_as_ambiguous_and_resent_under_resend() -> None:
    msg = inbound(1)
    m = Machine([prepared(msg, "hi")], policy="resend")
    [check] = of(m.hold(), Check)  # prepared elsewhere: perhaps sent already

    out = m(CheckDone(at(10), check.token, msg.key, 0, None))
    [log] = [e for e in of(out, Log) if e.event is not None]
    assert log.event is not None
    assert (log.event["kind"], log.event["action"]) == ("ambiguous_send", "send")
    assert counted(out, "delivery.ambiguous") == 1
    [send] = of(out, Send)
    assert (send.entry.key, send.index) == (msg.key, 0)
    assert persisted(out) == []


def test_a_sink_that_cannot_say_is_reported_as_ambiguous_and_recorded_under_skip() -> None:
    msg = inbound(1)
    m = Machine([prepared(msg, "hi")], policy="skip")
    [check] = of(m.hold(), Check)

    out = m(CheckDone(at(10), check.token, msg.key, 0, None))
    [log] = [e for e in of(out, Log) if e.event is not None]
    assert log.event is not None
    assert (log.event["kind"], log.event["action"]) == ("ambiguous_send", "commit_unknown")
    assert [p.op for p in persisted(out)] == [LedgerOp.COMMIT, LedgerOp.ACK]
    assert of(out, Send) == []
    assert [a["kind"] for a in m.s.alarms.recent()] == ["ambiguous_send"]


def test_what_is_not_a_delivery_event_is_an_illegal_event() -> None:
    s = DeliveryState(DeliveryConfig(ME), [])
    with pytest.raises(IllegalEvent, match="not a delivery event"):
        step(s, "tick")  # type: ignore[arg-type]
