"""HandoffActor with in-memory parts (tests/actors/machines.py; the lease is played by a
stand-in that moves the gates on Yield). A wakeup under load moves the role without a
lost, doubled or out-of-order reply and the echo turn counts go on without a gap; a
begin from the wrong machine, a forged or mismatching ack and a target that cannot
catch up each leave the old holder awake, and the wakeup says why."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from baton.actors.delivery_messages import GetDelivery
from baton.actors.messages import EnvelopeReceived
from baton.agents.base import AgentMessage, Turn
from baton.channels.memory import MemoryChannel
from baton.core.handoff import NOT_AWAKE
from baton.core.settings import Settings
from baton.wire.envelope import Envelope, make_envelope
from baton.wire.handoff_transport import HandoffWireTransport
from tests.actors.machines import (
    Machine,
    accepted,
    all_answered,
    bot_texts,
    post_many,
)
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(90)

FAST = Settings(agent_retries=1, live_tail_flush_ms=100, handoff_ack_timeout_ms=1500)


@pytest.fixture
def trio() -> Iterator[tuple[MemoryChannel, Machine, Machine, Machine]]:
    channel = MemoryChannel("memory")
    router: dict[str, Machine] = {}
    machines = [Machine(seed, channel, router, settings=FAST) for seed in (10, 20, 30)]
    router.update({m.id: m for m in machines})
    for m in machines:
        m.peers(*(o for o in machines if o is not m))
    a, b, c = machines
    try:
        yield channel, a, b, c
    finally:
        for m in machines:
            m.stop()


def counts_continue(channel: MemoryChannel, topics: int) -> None:
    """Every topic's replies name 0, 1, 2, ... earlier turns: no turn lost or doubled."""
    for t in range(topics):
        texts = bot_texts(channel, f"t{t}")
        assert texts, f"t{t} has replies"
        for n, text in enumerate(texts):
            assert text.endswith(f"(earlier turns: {n})"), (t, n, text)


class Load:
    """Posts a message every few ms over ``topics`` topics until stopped."""

    def __init__(self, channel: MemoryChannel, topics: int) -> None:
        self.channel, self.topics = channel, topics
        self.ids: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(0.01) and n < 2000:
            self.ids.add(
                self.channel.post_user_message(f"t{n % self.topics}", f"m{n}", f"c{n:08d}")
            )
            n += 1

    def end(self) -> set[int]:
        self.stop.set()
        self.thread.join(10)
        return self.ids


def test_a_wakeup_under_load_moves_the_role_with_nothing_lost_or_doubled(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    channel, a, b, c = trio
    a.hold(1)
    load = Load(channel, 4)
    wait_for(lambda: len(accepted(channel)) >= 40, 30, "replies flowing")
    result = b.wakeup()
    assert result["ok"] and result["outcome"] == "handed_over" and result["epoch"] == 2, result
    assert b.gate.current(0) == 2 and a.gate.current(0) is None and c.gate.current(0) is None
    after = len(accepted(channel))
    wait_for(lambda: len(accepted(channel)) >= after + 40, 30, "b answers on")
    back = a.wakeup()  # and back again
    assert back["outcome"] == "handed_over" and back["epoch"] == 3, back
    ids = load.end()
    wait_for(lambda: all_answered(channel, ids), 30, "every message answered")
    assert set(accepted(channel).values()) == {1}  # none twice
    counts_continue(channel, 4)  # transcript loss 0
    assert a.lease.proxy().yields.get() == [b.id] and b.lease.proxy().yields.get() == [a.id]
    assert a.counters.get("handoff.holder.yielded") == 1


def test_wakeup_on_the_awake_machine_says_so_and_changes_nothing(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    _, a, b, _ = trio
    a.hold(4)
    result = a.wakeup()
    assert result["ok"] and result["outcome"] == "already_awake" and result["epoch"] == 4
    assert a.gate.current(0) == 4 and b.gate.current(0) is None


def test_a_slow_reply_in_flight_is_drained_before_the_yield() -> None:
    go = threading.Event()

    def slow(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        if message.text == "slow":
            go.wait(20)
        return [f"echo: {message.text} (earlier turns: {len(history)})"]

    channel = MemoryChannel("memory")
    router: dict[str, Machine] = {}
    a = Machine(10, channel, router, settings=FAST, agent=slow)
    b = Machine(20, channel, router, settings=FAST, agent=slow)
    router.update({a.id: a, b.id: b})
    a.peers(b)
    b.peers(a)
    try:
        a.hold(1)
        first = channel.post_user_message("t0", "slow", "c-slow-001")
        wait_for(lambda: a.ref.ask(GetDelivery(), timeout=5)["working"] == 1, 10, "in flight")
        # status names the message the topic waits on, and how far it got
        assert a.ref.ask(GetDelivery(), timeout=5)["waiting_on"] == {
            "1/1": "memory:1/1:1 processing"
        }
        done = threading.Timer(0.5, go.set)
        done.start()
        result = b.wakeup()
        assert result["outcome"] == "handed_over", result
        assert accepted(channel)[first] == 1  # a delivered it before it yielded
        second = channel.post_user_message("t0", "after", "c-after-01")
        wait_for(lambda: all_answered(channel, {second}), 20, "b answers")
        assert bot_texts(channel, "t0") == [
            "echo: slow (earlier turns: 0)",
            "echo: after (earlier turns: 1)",
        ]
        done.join(5)
    finally:
        go.set()
        a.stop()
        b.stop()


def still_awake(channel: MemoryChannel, a: Machine, tag: str) -> None:
    """``a`` holds and answers (its ingress runs again)."""
    assert a.gate.current(0) is not None
    mid = channel.post_user_message("t0", f"still {tag}", f"c-still-{tag}")
    wait_for(lambda: all_answered(channel, {mid}), 20, f"a answers after {tag}")


def test_a_begin_from_a_machine_that_is_not_the_holder_is_refused(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    channel, a, b, c = trio
    a.hold(1)
    a.link = lambda env: [] if env.type == "handoff_begin" else [env]  # a's begin is lost
    hid: list[str] = []

    def forge_begin(env: Envelope) -> list[Envelope]:
        if env.type == "handoff_request":  # c begins in a's place, and a at an old epoch
            hid.append(env.body["handoff_id"])
            t = HandoffWireTransport(c.id, c.signer, c.deliver)
            t.begin(b.id, env.body["handoff_id"], 1, (), 0)
            HandoffWireTransport(a.id, a.signer, a.deliver).begin(b.id, hid[0], 0, (), 0)
        return [env]

    b.link = forge_begin
    result = b.wakeup()
    assert not result["ok"] and result["outcome"] == "timeout", result
    assert "no begin" in result["detail"]
    assert b.counters.get("handoff.target.refused") == 2
    still_awake(channel, a, "a forged begin")


def holding_with_turns(channel: MemoryChannel, a: Machine) -> None:
    """``a`` holds and has answered a few messages (its transcripts have heads)."""
    a.hold(1)
    ids = post_many(channel, 6)
    wait_for(lambda: all_answered(channel, ids), 20, "answered")


def test_a_forged_ack_is_refused_and_the_holder_stays_awake(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    channel, a, b, _ = trio
    holding_with_turns(channel, a)

    def forge(env: Envelope) -> list[Envelope]:
        if env.type != "handoff_ack":
            return [env]
        body = {**env.body, "signature": "00" * 64}
        return [make_envelope(env.type, env.sender, env.to, body, env.id, epoch=env.epoch)]

    b.link = forge
    result = b.wakeup()
    assert not result["ok"] and "forged" in result["detail"], result
    assert a.counters.get("handoff.holder.aborted") == 1
    still_awake(channel, a, "a forged ack")


def test_an_ack_that_does_not_match_begin_is_refused(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    channel, a, b, _ = trio
    holding_with_turns(channel, a)

    def mismatch(env: Envelope) -> list[Envelope]:
        if env.type == "handoff_ack":  # signed by b all right, but claiming other heads
            HandoffWireTransport(b.id, b.signer, b.deliver).ack(
                a.id, env.body["handoff_id"], env.epoch, (("9/9", 1, "k"),), 0
            )
            return []
        return [env]

    b.link = mismatch
    result = b.wakeup()
    assert not result["ok"] and "does not match" in result["detail"], result
    still_awake(channel, a, "a mismatching ack")


def test_a_target_that_cannot_catch_up_in_time_gives_up_and_the_holder_stays(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    channel, a, b, _ = trio
    a.link = lambda env: [] if env.type == "tail" else [env]  # b never gets the tail
    holding_with_turns(channel, a)
    result = b.wakeup()
    assert not result["ok"] and "catch up" in result["detail"], result
    assert b.counters.get("tail.pulls") >= 1
    still_awake(channel, a, "a target behind")


def test_an_abort_for_another_handoff_moves_nothing(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    _, a, b, _ = trio
    a.hold(1)
    abort = make_envelope(
        "handoff_abort", b.id, a.id, {"handoff_id": "x" * 16, "reason": "r"}, "i1"
    )
    bad = make_envelope("handoff_abort", b.id, a.id, {"handoff_id": "?", "reason": "r"}, "i2")
    stranger = replace(abort, sender="m_aaaaaaaaaaaaaaaa")
    for env in (abort, bad, stranger):
        a.handoff.tell(EnvelopeReceived(env))
    wait_for(lambda: a.counters.get("handoff.refused.malformed") == 2, 10, "two refused")
    assert a.counters.get("handoff.holder.ignored") == 1 and a.gate.current(0) == 1


def test_a_request_to_a_machine_that_does_not_hold_is_refused_as_not_awake_at_once(
    trio: tuple[MemoryChannel, Machine, Machine, Machine],
) -> None:
    """c's view is stale: it asks b, which stood down. b says it is not awake (so c looks
    the lease up), not that c is out of b's in-sync set (which is not b's to judge)."""
    _, a, b, c = trio
    c.link = lambda env: [] if env.to == a.id else [env]  # c cannot ask to join
    a.hold(1, in_sync=())  # so c is not in sync, in anyone's view
    aborts: list[Envelope] = []
    b.link = lambda env: (env.type == "handoff_abort" and aborts.append(env), [env])[1]
    HandoffWireTransport(c.id, c.signer, c.deliver).request(b.id, "f" * 24)
    wait_for(lambda: aborts, 10, "b answers the request")
    assert [(e.to, e.body["reason"]) for e in aborts] == [(c.id, NOT_AWAKE)]
    assert a.gate.current(0) == 1 and b.gate.current(0) is None
    assert c.id not in b.gate.view().in_sync
