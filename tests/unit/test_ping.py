from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from baton.core.ping import PingTracker


def test_rtt_and_reachability_follow_pongs() -> None:
    t = PingTracker(interval_ms=1000)
    t.set_peers(["m_a"])
    assert t.due(0) == ["m_a"]
    t.sent("m_a", "p1", 0)
    assert t.due(500) == []
    assert t.pong("m_a", "p1", 12.5) == 12.5
    [r] = t.report(100)
    assert r.reachable and r.rtt_ms == 12.5 and r.pings == 1 and r.pongs == 1
    [r] = t.report(12.5 + 3000)
    assert not r.reachable, "a peer silent for the timeout is unreachable"


def test_pongs_that_answer_nothing_are_ignored() -> None:
    t = PingTracker(interval_ms=1000)
    t.set_peers(["m_a", "m_b"])
    t.sent("m_a", "p1", 0)
    assert t.pong("m_b", "p1", 5) is None, "a pong from another peer"
    assert t.pong("m_a", "nope", 5) is None, "an unknown ping id"
    assert t.pong("m_x", "p1", 5) is None, "a machine that is not a peer"
    assert t.pong("m_a", "p1", 5000) is None, "an expired ping"
    assert t.pong("m_a", "p1", 10) is None, "expired pings are forgotten"
    assert all(not r.reachable for r in t.report(10))


def test_a_pong_counts_once() -> None:
    t = PingTracker(interval_ms=1000)
    t.set_peers(["m_a"])
    t.sent("m_a", "p1", 0)
    assert t.pong("m_a", "p1", 3) == 3
    assert t.pong("m_a", "p1", 4) is None


def test_removed_peers_are_forgotten_and_kept_peers_keep_state() -> None:
    t = PingTracker(interval_ms=1000)
    t.set_peers(["m_a", "m_b"])
    t.sent("m_a", "p1", 0)
    t.pong("m_a", "p1", 1)
    t.set_peers(["m_a"])
    assert [r.machine_id for r in t.report(2)] == ["m_a"]
    assert t.report(2)[0].rtt_ms == 1


@given(st.lists(st.floats(min_value=0, max_value=10_000), min_size=1, max_size=200))
def test_outstanding_pings_stay_bounded(gaps: list[float]) -> None:
    t = PingTracker(interval_ms=100)
    t.set_peers(["m_a"])
    now = 0.0
    for i, gap in enumerate(gaps):
        now += gap
        t.sent("m_a", f"p{i}", now)
    link = t._links["m_a"]
    assert all(now - sent < t.timeout_ms for sent in link.outstanding.values())
