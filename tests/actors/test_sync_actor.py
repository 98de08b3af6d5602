"""The in-sync set with in-memory parts (tests/actors/machines.py): a reply leaves only
once every standby the record names has recorded its prepared marker; a laggard leaves
the set first; a machine that comes back catches up before it may answer again. The
judge is a sink that forgives nothing (no reply keys, no fencing)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from baton.agents.base import AgentMessage, Turn
from baton.channels.memory import MemoryChannel
from baton.core import delivery
from baton.core.ledger import LedgerState
from baton.core.settings import Settings
from tests.actors.machines import Machine, accepted, all_answered
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(90)


class Unforgiving:
    """A sink like Telegram: it delivers every send, and cannot say what it has."""

    def __init__(self, inner: MemoryChannel) -> None:
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send(self, reply: Any) -> Any:  # a fresh key each time: nothing is recognised
        return self.inner.send(replace(reply, reply_key=f"{len(self.inner.sends):064x}"))

    def delivered(self, reply_key: str) -> bool | None:
        return None


def pair_of(
    channel: MemoryChannel, settings: Settings, agent: Any = None
) -> tuple[Machine, Machine]:
    router: dict[str, Machine] = {}
    sink = Unforgiving(channel)
    kw = {} if agent is None else {"agent": agent}
    a = Machine(10, sink, router, settings=settings, **kw)
    b = Machine(20, sink, router, settings=settings)
    router.update({a.id: a, b.id: b})
    a.peers(b)
    b.peers(a)
    return a, b


def stalled_pair(word: str) -> tuple[threading.Event, MemoryChannel, Machine, Machine]:
    """A pair at the unforgiving sink whose holder's agent stalls on ``word`` until the
    event is set (a minute at most)."""
    release = threading.Event()

    def stall_on_word(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        if message.text == word:
            release.wait(60)
        return [f"echo: {message.text}"]

    channel = MemoryChannel("memory")
    a, b = pair_of(channel, Settings(), agent=stall_on_word)
    return release, channel, a, b


def test_a_reply_waits_for_the_standby_in_sync_and_a_laggard_leaves_the_set_first() -> None:
    channel = MemoryChannel("memory")
    a, b = pair_of(channel, Settings(lease_ttl_ms=6000, renew_interval_ms=2000))  # 3 s to ack
    try:
        a.hold(1, in_sync=(b.id,))
        b.dropped = True  # b records a's markers, but its acks are lost
        mid = channel.post_user_message("t0", "hello", "c-hello-01")
        key = f"memory:1/1:{mid}"
        wait_for(
            lambda: (e := a.ledger.get(key)) and e.state is LedgerState.PREPARED, 10, "prepared"
        )
        assert not accepted(channel)  # nothing leaves before b has recorded the marker
        wait_for(lambda: all_answered(channel, {mid}), 20, "answered once b is out of sync")
        assert a.counters.get("sync.removed") == 1 and a.in_sync == ()
        assert b.ledger.get(key) is not None  # b has the marker; only its ack was lost
        b.dropped = False  # b's acks flow again: it asks to join, catches up, is back in
        wait_for(lambda: a.in_sync == (b.id,), 20, "b back in sync")
        assert a.counters.get("sync.joins") >= 1
        assert set(accepted(channel).values()) == {1}
    finally:
        a.stop()
        b.stop()


def test_a_machine_that_comes_back_never_answers_again_what_the_other_answered() -> None:
    """The reproduction: the holder stops with an agent run in flight, the standby
    answers, the old holder comes back and is made holder again: one send."""
    release, channel, a, b = stalled_pair("first")
    try:
        a.hold(1, in_sync=(b.id,))
        first = channel.post_user_message("t0", "first", "c-first-001")
        key = f"memory:1/1:{first}"
        wait_for(lambda: (e := a.ledger.get(key)) and e.state is LedgerState.PROCESSING, 10, "run")
        a.hold(None)  # a goes down with the run in flight ...
        a.dropped = True  # ... and hears nothing while b answers
        b.hold(2)  # b was in sync: it takes over (its record names nobody yet)
        wait_for(lambda: all_answered(channel, {first}), 20, "b answers")
        release.set()  # a's run ends: its term is over, the result is dropped
        a.dropped = False  # a comes back as a standby out of sync and catches up
        wait_for(lambda: b.in_sync == (a.id,), 20, "a back in sync")
        entry = a.ledger.get(key)
        assert entry is not None and entry.state is LedgerState.ACKED
        b.hold(None)
        a.hold(3)  # a holds again (a wakeup)
        second = channel.post_user_message("t0", "second", "c-second-01")
        wait_for(lambda: all_answered(channel, {second}), 20, "a answers the next one")
        assert accepted(channel) == {first: 1, second: 1}  # nothing answered twice
    finally:
        release.set()
        a.stop()
        b.stop()


def test_a_joiner_learns_the_answers_the_channel_may_still_deliver_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by an attacking review: one slow topic holds the channel's cursor, so an
    answered message above it comes again from the channel; a standby that rejoined
    must know it was answered, else once holding it answers it again. (The slow message
    is never secured here, as one whose received marker cannot reach the standbys.)"""
    monkeypatch.setattr(delivery, "SECURE_AFTER_MS", 1e12)
    release, channel, a, b = stalled_pair("slow")
    try:
        a.hold(1, in_sync=(b.id,))
        a.link = lambda env: [] if env.to == b.id else [env]  # b is down: it hears nothing
        b.dropped = True
        slow = channel.post_user_message("t0", "slow", "c-slow-0001")
        key = f"memory:1/1:{slow}"
        wait_for(lambda: (e := a.ledger.get(key)) and e.state is LedgerState.PROCESSING, 10, "run")
        quick = channel.post_user_message("t1", "quick", "c-quick-001")
        qkey = f"memory:1/2:{quick}"
        wait_for(lambda: (e := a.ledger.get(qkey)) and e.state is LedgerState.ACKED, 30, "quick")
        assert a.cursor.read()[0] == 1 and b.ledger.get(qkey) is None  # the cursor stays low
        a.link, b.dropped = None, False  # b comes back, asks to join, catches up
        wait_for(lambda: a.in_sync == (b.id,), 20, "b back in sync")
        entry = b.ledger.get(qkey)
        assert entry is not None and entry.state is LedgerState.ACKED
        a.hold(None)  # a dies; b takes over and polls: quick comes again
        a.dropped = True
        b.hold(2)
        release.set()
        wait_for(lambda: all_answered(channel, {slow}), 20, "b answers slow")
        wait_for(lambda: b.cursor.read()[0] == quick + 1, 20, "b's cursor past quick")
        assert accepted(channel)[quick] == 1
    finally:
        release.set()
        a.stop()
        b.stop()


def test_a_slow_topic_holds_up_no_other_and_a_takeover_still_answers_it() -> None:
    """Issue 15: the cursor passes a message not yet answered once every standby in sync
    holds it (a received marker): other topics' updates keep coming. The standby that
    left the set learns it when it rejoins, and answers it once it holds."""
    release, channel, a, b = stalled_pair("slow")
    try:
        a.hold(1, in_sync=(b.id,))
        slow = channel.post_user_message("t0", "slow", "c-slow-0001")
        key = f"memory:1/1:{slow}"
        wait_for(lambda: b.ledger.get(key) is not None, 10, "b holds the slow message")
        wait_for(lambda: a.counters.get("marker.acked") >= 1, 10, "b's ack at a")  # after
        quick = [channel.post_user_message(f"t{i}", "quick", f"c-quick-{i:03d}") for i in (1, 2)]
        wait_for(lambda: all_answered(channel, set(quick)), 20, "the other topics answered")
        past = channel.next_update_id
        wait_for(lambda: a.cursor.read()[0] == past, 10, "the cursor past them all")
        assert not all_answered(channel, {slow}) and a.cursor.read()[1] is False  # long polls
        a.link = lambda env: [] if env.to == b.id else [env]  # b goes down
        b.dropped = True
        again = channel.post_user_message("t3", "again", "c-again-001")
        wait_for(lambda: all_answered(channel, {again}), 20, "answered once b left the set")
        akey = f"memory:1/4:{again}"
        assert a.in_sync == () and a.ledger.get(akey) is not None and b.ledger.get(akey) is None
        # no standby in sync holds the slow message now: the channel must keep it (a
        # forced takeover by b would not find it), so the cursor is back at it
        wait_for(lambda: a.cursor.read() == (1, True), 10, "the cursor back at the slow one")
        a.link, b.dropped = None, False  # b comes back, catches up, is in sync again
        wait_for(lambda: a.in_sync == (b.id,), 20, "b back in sync")
        past = channel.next_update_id
        wait_for(lambda: a.cursor.read()[0] == past, 10, "the cursor passes it again")
        a.hold(None)  # a dies with the slow run in flight; b takes over
        a.dropped = True
        b.hold(2)
        wait_for(lambda: all_answered(channel, {slow}), 20, "b answers the slow message")
        release.set()
        assert accepted(channel) == {slow: 1, quick[0]: 1, quick[1]: 1, again: 1}
    finally:
        release.set()
        a.stop()
        b.stop()
