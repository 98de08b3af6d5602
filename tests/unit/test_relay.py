"""Relay: the parts a node starts after its lease (or its registry) still learn who holds
(and who the members are)."""

from __future__ import annotations

import threading

import pytest

from baton.core.lease import LeaseChanged, Phase
from baton.node.relay import Relay

A, B = "m_aaaaaaaaaaaaaaaa", "m_bbbbbbbbbbbbbbbb"


def change(epoch: int, holder: str = A) -> LeaseChanged:
    return LeaseChanged(Phase.STANDBY, holder, epoch, "holder changed")


def test_a_listener_added_after_a_change_is_told_it_at_once_then_every_later_one() -> None:
    relay: Relay[LeaseChanged] = Relay("lease")
    early: list[LeaseChanged] = []
    relay.add(early.append)
    relay(change(1))
    relay(change(2, B))  # the lease learned who holds before the late part started
    late: list[LeaseChanged] = []
    relay.add(late.append)
    assert late == [change(2, B)]
    relay(change(3))
    assert early == [change(1), change(2, B), change(3)]
    assert late == [change(2, B), change(3)]


def test_nothing_is_replayed_before_the_lease_said_anything() -> None:
    relay: Relay[LeaseChanged] = Relay("lease")
    told: list[LeaseChanged] = []
    relay.add(told.append)
    assert told == []


def test_a_failing_listener_keeps_no_other_uninformed(caplog: pytest.LogCaptureFixture) -> None:
    relay: Relay[LeaseChanged] = Relay("lease")

    def broken(_: LeaseChanged) -> None:
        raise RuntimeError("a part that is stopping")

    told: list[LeaseChanged] = []
    relay.add(broken)
    relay.add(told.append)
    relay(change(1))
    assert told == [change(1)]
    assert "a listener failed" in caplog.text


def test_a_listener_added_while_changes_arrive_sees_each_once_in_order() -> None:
    """The lease's thread tells changes while the node's thread adds a part: the part
    gets the latest change when added, then every later one, none twice, none lost."""
    relay: Relay[LeaseChanged] = Relay("lease")
    done = threading.Event()

    def lease() -> None:
        for epoch in range(1, 2001):
            relay(change(epoch))
        done.set()

    thread = threading.Thread(target=lease, daemon=True)
    thread.start()
    seen: list[list[int]] = []
    try:
        for _ in range(50):
            told: list[int] = []
            seen.append(told)
            relay.add(lambda c, told=told: told.append(c.epoch))
    finally:
        assert done.wait(30), "the lease thread did not finish"
        thread.join(10)
    for told in seen:
        if told:  # added before the first change: nothing replayed, every one told
            assert told == list(range(told[0], 2001))
