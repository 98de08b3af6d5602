"""LeaseGate: an epoch only while holding and before the local deadline."""

from __future__ import annotations

from baton.gate import LeaseGate


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
