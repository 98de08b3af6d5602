"""LeaseGate: an epoch only while holding and before the local deadline."""

from __future__ import annotations

import threading
import time

from baton.holder.gate import LeaseGate, LeaseView


def test_the_gate_opens_only_for_a_holder_before_its_deadline() -> None:
    gate = LeaseGate()
    assert gate.current(0.0) is None  # nobody said anything yet: do not act
    gate.publish(4, 1000.0)
    assert gate.current(999.9) == 4
    assert gate.current(1000.0) is None  # a paused holder wakes past its deadline
    gate.publish(None, None)  # demoted
    assert gate.current(10.0) is None
    gate.publish(5, None)  # an epoch without a deadline is not a licence to act
    assert gate.current(10.0) is None


def test_a_waiter_wakes_when_the_epoch_changes_and_not_otherwise() -> None:
    gate = LeaseGate()
    woke = threading.Event()

    def wait() -> None:
        gate.wait_change(30)
        woke.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    try:
        gate.publish(None, None)  # no change: the waiter sleeps on
        assert not woke.wait(0.2)
        gate.publish(3, 1000.0)
        assert woke.wait(10), "the waiter woke when the gate opened"
    finally:
        gate.publish(None, None)
        waiter.join(10)
    assert not waiter.is_alive()
    started = time.monotonic()
    gate.wait_change(0.05)  # and the wait is bounded
    assert time.monotonic() - started < 5


def test_the_view_is_what_was_published_last() -> None:
    gate = LeaseGate()
    assert gate.view() == LeaseView()
    gate.publish_view(LeaseView("m_x", 4, 12.0))
    assert gate.view() == LeaseView("m_x", 4, 12.0)
