"""The pool's placement (baton.core.pool_placement): pinned, then sticky, then
least-loaded; a dead machine's topics move after the ttl, a pin to a dead machine waits
and says so; the ownership epoch goes up exactly when the owner changes; and the
description GET /pool/placement gives. Properties under hypothesis over random pools,
pins, deaths and bursts of topics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core.pool_placement import (
    Pin,
    Placement,
    PoolMachine,
    Reason,
    TopicPlacementDescription,
    owns,
    place,
    place_all,
)

pytestmark = pytest.mark.timeout(60)

TTL = 3000
NOW = 100_000.0


def pool(**loads: int) -> dict[str, PoolMachine]:
    return {n: PoolMachine(n, f"nick-{n}", load, NOW) for n, load in loads.items()}


def dead(machines: dict[str, PoolMachine], name: str) -> dict[str, PoolMachine]:
    m = machines[name]
    return {**machines, name: PoolMachine(m.machine_id, m.nickname, m.load, NOW - TTL - 1)}


def test_a_new_topic_goes_to_the_least_loaded_machine_ties_by_id() -> None:
    placed = place("t", None, None, pool(a=3, b=1, c=1), now_ms=NOW, ttl_ms=TTL)
    assert placed == Placement("t", "b", Reason.PLACED, 1)


def test_a_topic_stays_where_it_runs_while_that_machine_lives() -> None:
    running = Placement("t", "a", Reason.PLACED, 4)
    assert place("t", running, None, pool(a=9, b=0), now_ms=NOW, ttl_ms=TTL) == running


def test_a_dead_machines_topic_moves_after_the_ttl_with_a_new_epoch() -> None:
    running = Placement("t", "a", Reason.PLACED, 4)
    machines = pool(a=0, b=5)
    at_ttl = {**machines, "a": PoolMachine("a", "nick-a", 0, NOW - TTL)}
    assert place("t", running, None, at_ttl, now_ms=NOW, ttl_ms=TTL) == running  # not yet: the ttl
    assert place("t", running, None, dead(machines, "a"), now_ms=NOW, ttl_ms=TTL) == Placement(
        "t", "b", Reason.PLACED, 5
    )


def test_a_pin_wins_and_a_pin_to_a_dead_machine_waits_and_says_so() -> None:
    running = Placement("t", "a", Reason.PLACED, 4)
    pin = Pin("t", "c", 1.0, "operator")
    assert place("t", running, pin, pool(a=0, b=0, c=7), now_ms=NOW, ttl_ms=TTL) == Placement(
        "t", "c", Reason.PINNED, 5
    )
    waiting = place("t", running, pin, dead(pool(a=0, b=0, c=7), "c"), now_ms=NOW, ttl_ms=TTL)
    assert waiting == Placement("t", "c", Reason.PINNED, 5, waiting=True)
    back = place("t", waiting, pin, pool(a=0, b=0, c=7), now_ms=NOW, ttl_ms=TTL)
    assert back == Placement("t", "c", Reason.PINNED, 5)  # the same owner: the same epoch


def test_a_pin_to_a_machine_that_left_the_mesh_is_no_pin() -> None:
    pin = Pin("t", "gone", 1.0, "operator")
    assert place("t", None, pin, pool(a=0), now_ms=NOW, ttl_ms=TTL).machine_id == "a"
    other_topic = Pin("u", "a", 1.0, "operator")
    assert place("t", None, other_topic, pool(a=5, b=0), now_ms=NOW, ttl_ms=TTL).machine_id == "b"


def test_nobody_alive_leaves_the_topic_unowned_and_its_epoch_kept() -> None:
    running = Placement("t", "a", Reason.PLACED, 4)
    none_alive = dead(dead(pool(a=0, b=0), "a"), "b")
    assert place("t", running, None, none_alive, now_ms=NOW, ttl_ms=TTL) == Placement(
        "t", None, Reason.UNOWNED, 4
    )
    assert place("t", None, None, {}, now_ms=NOW, ttl_ms=TTL) == Placement(
        "t", None, Reason.UNOWNED, 0
    )
    never_heard = {"a": PoolMachine("a", "nick-a")}
    assert place("t", None, None, never_heard, now_ms=NOW, ttl_ms=TTL).reason is Reason.UNOWNED


def test_only_the_owner_at_the_current_epoch_owns_a_result() -> None:
    now = Placement("t", "b", Reason.PLACED, 5)
    assert owns(now, "b", 5)
    assert not owns(now, "a", 4) and not owns(now, "b", 4) and not owns(now, "a", 5)
    assert not owns(None, "b", 5)


def test_a_burst_of_new_topics_spreads_over_the_pool() -> None:
    placed = place_all(
        [f"t{i}" for i in range(9)], {}, {}, pool(a=0, b=0, c=0), now_ms=NOW, ttl_ms=TTL
    )
    per = {m: sum(1 for p in placed.values() if p.machine_id == m) for m in "abc"}
    assert per == {"a": 3, "b": 3, "c": 3}


def test_the_description_names_the_machine_the_holder_and_why() -> None:
    machines = pool(a=0, b=0)
    placed = Placement("t", "b", Reason.PINNED, 2)
    d = TopicPlacementDescription.of("t", placed, machines, "a", now_ms=NOW, ttl_ms=TTL)
    assert d.to_json() == {
        "topic": "t",
        "machine_id": "b",
        "nickname": "nick-b",
        "holder": "a",
        "holder_nickname": "nick-a",
        "reason": "pinned",
        "epoch": 2,
        "waiting": False,
        "alive": True,
    }
    nowhere = TopicPlacementDescription.of(
        "u", None, machines, None, now_ms=NOW, ttl_ms=TTL
    ).to_json()
    assert nowhere["reason"] == "unowned" and nowhere["machine_id"] is None
    assert nowhere["holder_nickname"] is None and nowhere["alive"] is False


NAMES = ["a", "b", "c", "d", "e"]

machines_st = st.dictionaries(
    st.sampled_from(NAMES),
    st.tuples(st.integers(0, 20), st.booleans()),  # load, alive
    max_size=5,
).map(
    lambda d: {
        n: PoolMachine(n, f"nick-{n}", load, NOW if alive else NOW - TTL - 1)
        for n, (load, alive) in d.items()
    }
)
placement_st = st.none() | st.builds(
    Placement,
    st.just("t"),
    st.none() | st.sampled_from(NAMES),
    st.sampled_from(list(Reason)),
    st.integers(0, 100),
)
pin_st = st.none() | st.builds(
    Pin, st.just("t"), st.sampled_from(NAMES), st.just(1.0), st.just("x")
)


@settings(max_examples=400)
@given(machines_st, placement_st, pin_st)
def test_placement_properties(
    machines: dict[str, PoolMachine], current: Placement | None, pin: Pin | None
) -> None:
    placed = place("t", current, pin, machines, now_ms=NOW, ttl_ms=TTL)
    epoch = 0 if current is None else current.epoch
    owner = None if current is None else current.machine_id
    alive = {n for n, m in machines.items() if m.alive(now_ms=NOW, ttl_ms=TTL)}
    if placed.machine_id is not None:
        assert placed.machine_id in machines  # never a stranger
        assert placed.machine_id in alive or (placed.waiting and placed.reason is Reason.PINNED)
    else:
        assert not alive and placed.reason is Reason.UNOWNED
    moved = placed.machine_id is not None and placed.machine_id != owner
    assert placed.epoch == (epoch + 1 if moved else epoch)  # up by one exactly on a move
    if pin is not None and pin.machine_id in machines:
        assert placed.machine_id == pin.machine_id and placed.reason is Reason.PINNED
    elif owner in alive:
        assert placed.machine_id == owner  # sticky
    elif alive:
        least = min(machines[n].load for n in alive)
        assert machines[placed.machine_id or ""].load == least


@settings(max_examples=200)
@given(st.integers(1, 5), st.integers(0, 60))
def test_a_burst_never_leaves_two_machines_more_than_one_apart(n: int, topics: int) -> None:
    machines = {m: PoolMachine(m, m, 0, NOW) for m in NAMES[:n]}
    placed = place_all([f"t{i}" for i in range(topics)], {}, {}, machines, now_ms=NOW, ttl_ms=TTL)
    counts = [sum(1 for p in placed.values() if p.machine_id == m) for m in machines]
    assert max(counts) - min(counts) <= 1 and sum(counts) == topics
