"""A hypothesis state machine over delivery (tests/unit/delivery_sim.py): three machines,
each running the delivery machine itself (baton.core.delivery_machine), that crash,
pause, stay down while others answer, come back with their old ledgers and see a
ledger write fail; a wire that loses and reorders markers, acks and sync requests; a
lease that keeps the in-sync rules; a sink that forgives nothing; a channel cursor that
may pass unanswered messages the standbys hold. After every step: no reply taken twice
by the sink unless a send of it was in flight at a crash or pause, or it was reported
as an ambiguous send. At the end, healed: every message answered. Two mutation checks
change the core itself (a reply sent before the standbys in sync acked its prepared
marker; a cursor that passes what no standby holds) and show the model fails, each on a
scripted run of its own rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from baton.core import delivery_machine
from baton.core.delivery_machine import DeliveryState
from baton.core.delivery_types import Effect, LedgerFailed
from baton.core.marker_book import MarkerBook
from tests.unit.delivery_sim import ACK_TIMEOUT_MS, MESSAGES, DeliverySim, Node, inbound

NAMES = ("a", "b", "c")
name = st.sampled_from(NAMES)
pick = st.integers(0, 50)
TICK_MS = ACK_TIMEOUT_MS / 10  # the node ticks ten times in an ack timeout


class DeliveryModel(RuleBasedStateMachine):
    sim: DeliverySim

    @property
    def holder(self) -> Node:
        """The machine whose gate is open (the rules that use it require one)."""
        holder = self.sim.holder()
        assert holder is not None
        return holder

    @initialize(policy=st.sampled_from(["resend", "skip"]))
    def start(self, policy: str = "resend") -> None:
        self.sim = DeliverySim(NAMES, policy)
        for _ in range(MESSAGES // 2):  # some wait at the channel, the rest come later
            self.sim.post()

    @precondition(lambda self: self.sim.posted < MESSAGES)
    @rule()
    def a_user_posts(self) -> None:
        self.sim.post()

    @precondition(lambda self: self.sim.holder() is None)
    @rule(n=name)
    def takes_the_lease_if_it_may(self, n: str) -> None:
        node = self.sim.nodes[n]
        if self.sim.may_acquire(node):
            self.sim.acquire(node)

    # the holder's steps (a machine whose gate is closed takes none)

    @precondition(lambda self: self.sim.holder() is not None)
    @rule()
    def the_holder_polls(self) -> None:
        self.sim.poll(self.holder)

    @precondition(lambda self: any(n.agents for n in self.sim.nodes.values()))
    @rule(n=name, k=pick)
    def the_agent_answers(self, n: str, k: int) -> None:
        self.sim.agent_done(self.sim.nodes[n], k)

    @precondition(lambda self: any(n.answers for n in self.sim.nodes.values()))
    @rule(n=name)
    def reads_the_sinks_answers(self, n: str) -> None:
        self.sim.answer(self.sim.nodes[n])

    @rule(
        n=name, ms=st.sampled_from([0.0, TICK_MS, TICK_MS, ACK_TIMEOUT_MS / 2, 4 * ACK_TIMEOUT_MS])
    )
    def time_passes_and_a_machine_ticks(self, n: str, ms: float) -> None:
        """The holder: the pump, markers sent again, laggards and stalled joiners out,
        the set the standbys earned written to the store; a standby out of sync asks to
        join; a machine the lease names starts its term."""
        self.sim.tick(self.sim.nodes[n], ms)

    def the_holder_ticks(self, ms: float = 0.0) -> None:
        """(For the scripts.)"""
        self.sim.tick(self.holder, ms)

    @precondition(lambda self: bool(self.sim.wire))
    @rule(k=pick, drop=st.booleans())
    def the_wire_delivers_or_drops(self, k: int, drop: bool) -> None:
        k %= len(self.sim.wire)
        if drop:
            self.sim.wire.pop(k)
        else:
            self.sim.deliver(k)

    @precondition(lambda self: bool(self.sim.sends))
    @rule(k=pick, what=st.sampled_from(["takes", "takes, answer lost", "times out"]))
    def the_sink(self, k: int, what: str) -> None:
        """The sink takes a send (its answer may be lost), or the sender stops waiting
        for it (it may still land)."""
        k %= len(self.sim.sends)
        if what == "times out":
            self.sim.send_times_out(k)
        else:
            self.sim.sink_takes(k, answer_lost=what != "takes")

    @rule(n=name, fault=st.sampled_from(["crash", "restart", "pause or resume", "disk"]))
    def a_fault(self, n: str, fault: str) -> None:
        """A crash (kill -9: what the process knew is lost, its ledger stays), a restart,
        a pause (SIGSTOP: the lease passes it by) and its resumption, or a ledger write
        that fails (the next one: nothing after it is carried out)."""
        node = self.sim.nodes[n]
        if fault == "disk":
            node.failing = True
        elif fault == "crash":
            self.sim.crash(node)
        elif fault == "restart":
            self.sim.restart(node)
        else:
            (self.sim.resume if node.paused else self.sim.pause)(node)

    @precondition(lambda self: self.sim.holder() is not None)
    @rule()
    def a_handoff_stops_or_resumes_ingress(self) -> None:
        self.sim.ingress(self.holder)

    @invariant()
    def never_a_double_it_does_not_report(self) -> None:
        if hasattr(self, "sim"):
            assert not self.sim.unexcused_doubles(), f"doubled: {self.sim.unexcused_doubles()}"
            assert not self.sim.faults, self.sim.faults

    def teardown(self) -> None:
        if not hasattr(self, "sim"):
            return
        self.sim.heal()
        assert not self.sim.unexcused_doubles(), f"doubled: {self.sim.unexcused_doubles()}"
        assert not self.sim.unanswered(), f"never answered: {self.sim.unanswered()}"


DeliveryModel.TestCase.settings = settings(max_examples=300, stateful_step_count=100, deadline=None)
TestDeliveryModel = DeliveryModel.TestCase


def test_the_model_answers_every_message_when_all_is_well() -> None:
    """Not vacuous: a healthy mesh answers everything once, with markers acked."""
    sim = DeliverySim(NAMES)
    for _ in range(MESSAGES):
        sim.post()
    sim.heal()
    assert not sim.unanswered() and set(sim.sink.values()) == {1}
    assert sim.lease.in_sync == set(NAMES) - {sim.lease.holder}  # the standbys are in sync


@contextmanager
def sends_before_the_acks() -> Iterator[None]:
    """The mutation: a prepared reply never waits for the standbys' acks (its markers
    are still told)."""
    blocking = MarkerBook.blocking

    def never_blocks(book: MarkerBook, *args: object) -> bool:
        blocking(book, *args)  # type: ignore[arg-type]
        return False

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MarkerBook, "blocking", never_blocks)
        yield


@contextmanager
def passes_what_no_standby_holds() -> Iterator[None]:
    """The mutation: the cursor passes what was told as received, acked or not."""

    def secured(book: MarkerBook, entries: object) -> frozenset[str]:
        return frozenset(e.key for e in entries if e.key in book.recorded)  # type: ignore[attr-defined]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MarkerBook, "secured", secured)
        yield


def lost_markers_then_a_crash(model: DeliveryModel) -> None:
    """b holds and answers; its markers are lost; it records and acks the replies that
    went, and dies before its next long poll confirms the cursor; c takes over."""
    model.start()
    model.takes_the_lease_if_it_may("b")
    model.the_holder_polls()  # the agent starts on each topic's oldest message
    model.the_agent_answers("b", 0)  # prepared, its markers on the wire
    model.sim.wire.clear()  # and lost
    if model.sim.sends:  # (sent at once only if it does not wait for the acks)
        model.the_sink(0, "takes")
    model.reads_the_sinks_answers("b")  # recorded and acked
    model.never_a_double_it_does_not_report()
    model.a_fault("b", "crash")
    model.takes_the_lease_if_it_may("c")


def lost_received_markers_then_a_crash(model: DeliveryModel) -> None:
    """b holds; the received markers of the messages it has not answered are lost; two
    long polls go by; it dies; c takes over."""
    model.start()
    model.takes_the_lease_if_it_may("b")
    model.the_holder_polls()
    model.the_holder_ticks(ACK_TIMEOUT_MS)  # a second on: told as received
    model.sim.wire.clear()  # the markers are lost
    model.the_holder_polls()  # the next long poll goes out (past them, if secured)
    model.the_holder_polls()  # and confirms its cursor
    model.a_fault("b", "crash")
    model.takes_the_lease_if_it_may("c")


@contextmanager
def forgets_a_delivery_whose_record_failed() -> Iterator[None]:
    """The mutation: a reply known delivered whose commit was not written is not
    recorded again once the ledger is back."""
    ledger_failed = delivery_machine._ledger_failed

    def forgets(s: DeliveryState, event: LedgerFailed, out: list[Effect]) -> None:
        ledger_failed(s, event, out)
        s.recommit.clear()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(delivery_machine, "_ledger_failed", forgets)
        yield


def a_commit_write_fails(model: DeliveryModel) -> None:
    """b holds; a two-part reply is prepared and acked by the standbys; part 0 reaches
    the sink; the write that records it fails; the ledger is read back."""
    model.start()
    model.takes_the_lease_if_it_may("b")
    model.the_holder_polls()
    b = model.sim.nodes["b"]
    model.the_agent_answers("b", [j.entry.key for j in b.agents].index(inbound(1).key))
    while model.sim.wire:  # the standbys record the prepared marker, b has their acks
        model.the_wire_delivers_or_drops(0, drop=False)
    model.the_sink(0, "takes")  # part 0
    model.a_fault("b", "disk")  # its next write fails: the commit of part 0
    model.reads_the_sinks_answers("b")
    model.the_holder_ticks()  # the ledger is read back; the entry's markers told again
    while model.sim.wire:  # acked again: the next reply may go
        model.the_wire_delivers_or_drops(0, drop=False)


Script = Callable[[DeliveryModel], None]


def test_the_model_catches_a_reply_sent_before_the_standbys_acked() -> None:
    """Mutation check: send a prepared reply without waiting for the standbys in sync
    to ack its marker, and the model's own rules lead to an unreported double: c never
    heard of the reply, polls the message again and answers it again. (A derandomized
    search of the rules finds it too, in about 17 s on a quiet host: too slow to run
    beside CI's system tests.)"""
    model = DeliveryModel()
    with sends_before_the_acks():
        lost_markers_then_a_crash(model)
        with pytest.raises(AssertionError, match="doubled"):
            model.teardown()


def test_the_model_catches_a_cursor_that_passes_what_no_standby_holds() -> None:
    """Mutation check: let the channel cursor pass an unanswered message once it was
    told as received, acked or not, and the model finds messages never answered: the
    channel forgot them and the next holder never heard of them."""
    model = DeliveryModel()
    with passes_what_no_standby_holds():
        lost_received_markers_then_a_crash(model)
        with pytest.raises(AssertionError, match="never answered"):
            model.teardown()


def test_the_model_catches_a_delivery_forgotten_at_a_failed_write() -> None:
    """Mutation check: forget that a reply was delivered when the write recording it
    failed, and the machine sends it again though it knew (a double at the sink)."""
    model = DeliveryModel()
    with forgets_a_delivery_whose_record_failed():
        a_commit_write_fails(model)
        with pytest.raises(AssertionError, match="it knew delivered"):
            model.never_a_double_it_does_not_report()


@pytest.mark.parametrize(
    "script", [lost_markers_then_a_crash, lost_received_markers_then_a_crash, a_commit_write_fails]
)
def test_the_same_faults_without_the_mutations_break_nothing(script: Script) -> None:
    """The two scripts above on the model as built: nothing doubled, nothing lost."""
    model = DeliveryModel()
    script(model)
    model.teardown()  # healed: every message answered, no unreported double
    assert not model.sim.unanswered() and set(model.sim.sink.values()) == {1}
