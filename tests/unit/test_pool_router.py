"""The pool's routing (baton.core.pool_router): one message of a topic in flight at a
time, a move waiting for it, a dead owner's message run again elsewhere once, a late or
stale result refused; and a hypothesis model where owners crash and come back, pins
race, results arrive late, twice or from an older holder, and the holder fails over:
each topic runs in at most one place per (holder term, ownership epoch), no message is
accepted twice, and once the machines are back every message is answered."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from baton.core.pool_placement import Pin, Reason
from baton.core.pool_router import MachinePoolRegistry, SessionRouter, TopicRun

pytestmark = pytest.mark.timeout(120)

TTL = 3000
RUN_TIMEOUT = 10_000


def registry(now: float, *names: str) -> MachinePoolRegistry:
    reg = MachinePoolRegistry()
    for name in names:
        reg.heard(name, f"nick-{name}", now)
    return reg


def test_a_topic_runs_one_message_at_a_time_in_order() -> None:
    router = SessionRouter(1, registry(0, "a", "b"), ttl_ms=TTL)
    [first] = router.inbound("t", "k1", 0)
    assert first == TopicRun("t", "k1", "a", 1, 1)
    assert router.inbound("t", "k2", 0) == [] and router.inbound("t", "k1", 0) == []
    assert router.inbound("u", "j1", 0) == [TopicRun("u", "j1", "b", 1, 1)]  # least-loaded
    taken, [second] = router.result(first, 0)
    assert taken and second == TopicRun("t", "k2", "a", 1, 1)  # sticky, in order
    assert router.result(first, 0) == (False, [])  # twice: refused


def test_a_move_waits_for_the_message_in_flight_then_runs_on_the_target() -> None:
    router = SessionRouter(1, registry(0, "a", "b"), ttl_ms=TTL)
    [run] = router.inbound("t", "k1", 0)
    assert router.pin(Pin("t", "b", 1.0, "op"), 0) == []  # k1 finishes on a
    assert router.inbound("t", "k2", 0) == []
    taken, [moved] = router.result(run, 0)
    assert taken and moved == TopicRun("t", "k2", "b", 1, 2)
    assert router.placements["t"].reason is Reason.PINNED


def test_a_dead_owners_message_runs_again_elsewhere_once_and_its_result_is_refused() -> None:
    reg = registry(0, "a", "b")
    router = SessionRouter(1, reg, ttl_ms=TTL)
    [run] = router.inbound("t", "k1", 0)
    reg.heard("b", "nick-b", TTL + 1)
    assert router.tick(TTL) == []  # a is not dead yet
    [again] = router.tick(TTL + 1)
    assert again == TopicRun("t", "k1", "b", 1, 2)
    assert router.tick(TTL + 1) == []  # once
    assert router.result(run, TTL + 2) == (False, [])  # a, back late: refused
    assert router.result(again, TTL + 2) == (True, [])


def test_a_run_lost_on_a_live_machine_goes_out_again_at_a_new_epoch_after_its_time() -> None:
    """Found by an attack review: a run whose owner stays alive (it restarted within the
    ttl, or the run or its result was lost) held its topic for ever."""
    reg = registry(0, "a")
    router = SessionRouter(1, reg, ttl_ms=TTL, run_timeout_ms=RUN_TIMEOUT)
    [lost] = router.inbound("t", "k1", 0)
    assert router.inbound("t", "k2", 0) == []
    reg.heard("a", "nick-a", RUN_TIMEOUT)
    assert router.tick(RUN_TIMEOUT) == []  # not past its time yet
    reg.heard("a", "nick-a", RUN_TIMEOUT + 1)
    [again] = router.tick(RUN_TIMEOUT + 1)
    assert again == TopicRun("t", "k1", "a", 1, lost.epoch + 1) and router.taken_back == 1
    assert router.result(lost, RUN_TIMEOUT + 2) == (False, [])  # late: refused
    taken, [k2] = router.result(again, RUN_TIMEOUT + 2)
    assert taken and k2.key == "k2"


def test_a_pin_to_a_dead_machine_holds_the_messages_until_it_returns() -> None:
    reg = registry(0, "a", "b")
    router = SessionRouter(1, reg, ttl_ms=TTL)
    assert router.pin(Pin("t", "b", 1.0, "op"), TTL + 1) == []  # b not heard since 0
    assert router.inbound("t", "k1", TTL + 1) == []
    assert router.placements["t"].waiting
    reg.heard("b", "nick-b", TTL + 2)
    assert router.tick(TTL + 2) == [TopicRun("t", "k1", "b", 1, 1)]


def test_a_pinned_owner_cut_off_and_back_gets_its_taken_back_message_at_a_new_epoch() -> None:
    reg = registry(0, "a", "b")
    router = SessionRouter(1, reg, ttl_ms=TTL)
    router.pin(Pin("t", "a", 1.0, "op"), 0)
    [run] = router.inbound("t", "k1", 0)
    reg.heard("b", "nick-b", TTL + 1)
    assert router.tick(TTL + 1) == []  # a is cut off: the topic waits for its pin
    reg.heard("a", "nick-a", TTL + 2)
    [again] = router.tick(TTL + 2)
    assert again == TopicRun("t", "k1", "a", 1, run.epoch + 1)  # never the same run
    assert router.result(run, TTL + 2) == (False, [])  # the result from before the cut
    assert router.result(again, TTL + 2) == (True, [])


def test_a_new_holder_never_takes_a_result_of_the_old() -> None:
    reg = registry(0, "a")
    old = SessionRouter(1, reg, ttl_ms=TTL)
    [run] = old.inbound("t", "k1", 0)
    new = SessionRouter.restore(2, reg, ttl_ms=TTL, placements=old.placements, pins=old.pins)
    [rerun] = new.inbound("t", "k1", 0)  # the channel brings it again
    assert rerun == TopicRun("t", "k1", "a", 2, 1)
    assert new.result(run, 0) == (False, [])
    assert new.result(rerun, 0) == (True, [])


MACHINES = ("a", "b", "c")
TOPICS = ("t0", "t1", "t2", "t3")


class PoolModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.alive = set(MACHINES)
        self.reg = registry(self.now, *MACHINES)
        self.term = 1
        self.router = SessionRouter(self.term, self.reg, ttl_ms=TTL, run_timeout_ms=RUN_TIMEOUT)
        self.snapshot = ({}, {})  # the placements and pins replicated last
        self.sent: list[TopicRun] = []
        self.places: dict[tuple[str, int, int], set[str]] = defaultdict(set)
        self.messages: list[tuple[str, str]] = []
        self.accepted: set[str] = set()
        self.lost: set[TopicRun] = set()  # runs (or their results) the network lost
        self.count = 0

    def _sent(self, runs: list[TopicRun]) -> None:
        for run in runs:
            assert run.term == self.term
            self.sent.append(run)
            self.places[(run.topic, run.term, run.epoch)].add(run.machine_id)

    @rule(topic=st.sampled_from(TOPICS))
    def message(self, topic: str) -> None:
        self.count += 1
        key = f"{topic}:{self.count}"
        self.messages.append((topic, key))
        self._sent(self.router.inbound(topic, key, self.now))

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def a_result_arrives(self, data: st.DataObject) -> None:
        """Any run ever sent, late, repeated or of an older holder; only a live
        machine sends one."""
        run = data.draw(st.sampled_from(self.sent))
        if run.machine_id not in self.alive or run in self.lost:
            return
        taken, runs = self.router.result(run, self.now)
        if taken:
            assert run.key not in self.accepted, f"{run.key} accepted twice"
            assert run.term == self.term
            self.accepted.add(run.key)
        self._sent(runs)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def a_run_is_lost(self, data: st.DataObject) -> None:
        self.lost.add(data.draw(st.sampled_from(self.sent)))

    @rule(machine=st.sampled_from(MACHINES))
    def crash(self, machine: str) -> None:
        self.alive.discard(machine)

    @rule(machine=st.sampled_from(MACHINES))
    def come_back(self, machine: str) -> None:
        self.alive.add(machine)
        self.reg.heard(machine, f"nick-{machine}", self.now)

    @rule(step=st.sampled_from([TTL // 3, TTL + 1, RUN_TIMEOUT + 1]))
    def time_passes(self, step: int) -> None:
        self.now += step
        for machine in self.alive:
            self.reg.heard(machine, f"nick-{machine}", self.now)
        self._sent(self.router.tick(self.now))

    @rule(topic=st.sampled_from(TOPICS), machine=st.sampled_from(MACHINES))
    def move(self, topic: str, machine: str) -> None:
        self._sent(self.router.pin(Pin(topic, machine, self.now, "op"), self.now))

    @rule(topic=st.sampled_from(TOPICS))
    def unpin(self, topic: str) -> None:
        self._sent(self.router.unpin(topic, self.now))

    @rule()
    def replicate(self) -> None:
        self.snapshot = (dict(self.router.placements), dict(self.router.pins))

    @rule()
    def holder_fails_over(self) -> None:
        """The new holder starts from what was replicated last (maybe stale); the
        channel brings it every message not answered yet."""
        self.term += 1
        placements, pins = self.snapshot
        self.router = SessionRouter.restore(
            self.term,
            self.reg,
            ttl_ms=TTL,
            run_timeout_ms=RUN_TIMEOUT,
            placements=placements,
            pins=pins,
        )
        for topic, key in self.messages:
            if key not in self.accepted:
                self._sent(self.router.inbound(topic, key, self.now))

    @invariant()
    def one_place_per_epoch(self) -> None:
        for where, machines in self.places.items():
            assert len(machines) <= 1, (where, machines)

    @invariant()
    def nothing_dropped(self) -> None:
        held = {r.key for r in self.router.running.values()}
        for queue in self.router.waiting.values():
            held |= set(queue)
        for _, key in self.messages:
            assert key in self.accepted or key in held, f"{key} dropped"

    def teardown(self) -> None:
        """Every machine back and the pins lifted: every message gets answered."""
        for machine in MACHINES:
            self.come_back(machine)
        self.time_passes(TTL // 3)
        for _ in range(len(self.messages) * 4 + 10):
            running = list(self.router.running.values())
            if not running:
                break
            for run in running:
                if run in self.lost:
                    continue  # its time runs out below
                taken, runs = self.router.result(run, self.now)
                assert taken
                assert run.key not in self.accepted
                self.accepted.add(run.key)
                self._sent(runs)
            self.time_passes(RUN_TIMEOUT + 1)
        assert {key for _, key in self.messages} == self.accepted


PoolModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_the_pool_model = PoolModel.TestCase
