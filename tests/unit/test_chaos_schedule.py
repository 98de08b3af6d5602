"""A chaos schedule comes from its seed alone: the same seed replays it, fault for fault,
and every kind of fault it can name is one the campaign knows how to apply and undo."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from tools.chaos.campaign import Campaign, latency
from tools.chaos.schedule import KINDS, schedule


@given(st.integers(0, 2**32), st.integers(1, 30), st.floats(1.0, 10.0), st.floats(1.0, 15.0))
def test_the_same_seed_gives_the_same_schedule(seed: int, n: int, every: float, ttl: float) -> None:
    first = schedule(seed, n, every, ttl)
    assert first == schedule(seed, n, every, ttl)
    assert len(first) == n
    times = [f.at_s for f in first]
    assert times == sorted(times) and times[0] >= every * 0.99
    for a, b in itertools.pairwise(first):
        assert b.at_s >= a.at_s + a.duration_s, "faults never overlap"
    for f in first:
        assert f.kind in KINDS and f.target in ("holder", "standby", "any")
        assert (f.duration_s > 0) == (f.kind not in ("kill", "handoff"))
        if f.kind in ("pause", "isolate", "kill_whole"):
            assert f.duration_s >= 1.3 * ttl - 0.01, "past the lease"


def test_different_seeds_differ_and_every_kind_is_drawn_and_applicable() -> None:
    schedules = [schedule(seed, 12, 4.0, 3.0) for seed in range(20)]
    assert len({tuple(s) for s in schedules}) == 20
    drawn = {f.kind for s in schedules for f in s}
    assert drawn == set(KINDS)
    for kind in KINDS:
        assert callable(getattr(Campaign, f"_{kind}", None)), f"the campaign cannot apply {kind}"


def test_the_reply_latency_counts_each_message_from_its_post_to_its_first_accepted_reply() -> None:
    posted = [{"message_id": m, "at": 10.0 + m} for m in (1, 2, 3)]
    sends = [
        {"outcome": "accepted", "reply_to": 1, "time": 11.5},
        {"outcome": "accepted", "reply_to": 1, "time": 30.0},  # a double: the first counts
        {"outcome": "stale", "reply_to": 2, "time": 12.5},  # refused: not an answer
        {"outcome": "accepted", "reply_to": 2, "time": 16.0},
        {"outcome": "accepted", "reply_to": None, "time": 16.0},  # no message of ours
    ]  # message 3 is unanswered: no latency (the checker counts it lost)
    assert latency(posted, sends) == {"p50": 4.0, "p95": 4.0, "max": 4.0}
    assert latency(posted[:1], sends[:1]) == {"p50": 0.5, "p95": 0.5, "max": 0.5}
    assert latency(posted, []) == {}
