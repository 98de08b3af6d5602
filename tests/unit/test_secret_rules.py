"""The secrets' rules between machines (pure): the newest version of each name wins
whatever order versions arrive in, a machine's own change always beats what it had,
and what a peer sends is taken only if it reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core import secret_rules as rules
from baton.core.errors import BadSecret, NoSuchSecret
from baton.core.secret_rules import Secret

A, B, C = "m_aaaaaaaaaaaaaaaa", "m_bbbbbbbbbbbbbbbb", "m_cccccccccccccccc"
NOW = 1_800_000_000.0

versions = st.builds(
    Secret,
    value=st.sampled_from(["one", "two", "three"]),
    set_by=st.sampled_from([A, B, C]),
    set_at=st.sampled_from([NOW - 5, NOW, NOW + 5]),  # ties too
    deleted=st.booleans(),
).map(lambda s: Secret("", s.set_by, s.set_at, deleted=True) if s.deleted else s)
changes = st.lists(st.tuples(st.sampled_from(["API_KEY", "OTHER"]), versions), max_size=12)


def apply(order: list[tuple[str, Secret]]) -> dict[str, Secret]:
    secrets: dict[str, Secret] = {}
    for name, version in order:
        secrets = rules.taken(secrets, name, version, NOW) or secrets
    return secrets


@settings(max_examples=200, deadline=None)
@given(changes, st.randoms(use_true_random=False))
def test_every_order_of_arrival_ends_in_the_same_secrets(
    seen: list[tuple[str, Secret]], rnd: object
) -> None:
    shuffled = list(seen)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert apply(seen) == apply(shuffled)


def test_a_machines_own_change_beats_what_it_had_whatever_its_clock() -> None:
    theirs = {"API_KEY": Secret("theirs", B, NOW + 50)}
    mine = rules.with_secret(theirs, "API_KEY", "mine", A, NOW)  # a clock 50 s behind
    assert mine["API_KEY"].version > theirs["API_KEY"].version
    gone = rules.without_secret(mine, "API_KEY", A, NOW - 10)
    assert gone["API_KEY"].deleted and gone["API_KEY"].version > mine["API_KEY"].version
    with pytest.raises(NoSuchSecret):
        rules.without_secret(gone, "API_KEY", A, NOW)


def test_digests_say_who_has_what_newer() -> None:
    here = {"A1": Secret("x", A, 10.0), "A2": Secret("y", A, 20.0)}
    there = rules.read_digest({"A1": [10.0, A], "A2": [30.0, B], "A3": [1.0, C]})
    assert rules.newer_here(here, there) == []
    assert rules.newer_there(here, there)
    assert rules.newer_here(here, rules.read_digest({"A1": [5.0, A]})) == ["A1", "A2"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"name": "API_KEY"}',
        b'{"name": "API_KEY", "value": "x", "set_by": "mallory", "set_at": 1}',
        b'{"name": "API_KEY", "value": "x", "set_by": "m_aaaaaaaaaaaaaaaa", "set_at": 1e999}',
        b'{"name": "API_KEY", "deleted": false, "set_by": "m_aaaaaaaaaaaaaaaa", "set_at": 1}',
        b'{"name": "API_KEY", "value": "", "set_by": "m_aaaaaaaaaaaaaaaa", "set_at": 1}',
        b'{"name": "API_KEY", "value": "x", "set_by": "m_aaaaaaaaaaaaaaaa", "set_at": true}',
        b'{"name": "API_KEY", "value": "x", "set_by": "m_aaaaaaaaaaaaaaaa", "set_at": 1, "x": 1}',
        b"[" * 50_000,
    ],
)
def test_what_a_peer_sends_is_taken_only_if_it_reads(raw: bytes) -> None:
    with pytest.raises(BadSecret):
        rules.from_wire(raw)


def test_a_secret_round_trips_the_wire_form() -> None:
    for secret in (Secret("é\nx", A, NOW), Secret("", B, NOW, deleted=True)):
        assert rules.from_wire(rules.to_wire("API_KEY", secret)) == ("API_KEY", secret)
