"""The pool's state (baton.core.pool_state): well-formed or refused, read back exactly
from its JSON, ordered by (term, version), and decoded strictly from a peer's bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.errors import PoolRefused
from baton.core.pool_placement import Pin, Placement, Reason
from baton.core.pool_state import MAX_TOPICS, PoolState, newer

pytestmark = pytest.mark.timeout(60)

ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
pins = st.dictionaries(ids, st.tuples(ids, st.floats(-(2.0**53), 2.0**53), ids))
placements = st.dictionaries(
    ids, st.tuples(st.none() | ids, st.sampled_from(list(Reason)), st.integers(0, 9), st.booleans())
)


@given(st.booleans(), pins, placements, st.integers(0, 99), st.integers(0, 99))
def test_a_state_reads_back_from_its_json(
    enabled: bool, p: dict[str, Any], q: dict[str, Any], term: int, version: int
) -> None:
    state = PoolState(
        enabled,
        {t: Pin(t, *v) for t, v in p.items()},
        {t: Placement(t, *v) for t, v in q.items()},
        term,
        version,
    )
    assert PoolState.from_json(state.to_json()) == state


GOOD: dict[str, Any] = {"enabled": True, "term": 1, "version": 2, "pins": [], "placements": []}


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        GOOD | {"extra": 1},
        {k: v for k, v in GOOD.items() if k != "pins"},
        GOOD | {"enabled": 1},
        GOOD | {"term": -1},
        GOOD | {"version": True},
        GOOD | {"pins": {}},
        GOOD | {"pins": [["t", "m", 1.0]]},
        GOOD | {"pins": [["t", "m", "soon", "x"]]},
        GOOD | {"pins": [["t", "m", float("inf"), "x"]]},
        GOOD | {"pins": [["t", "m", 10**400, "x"]]},  # past a float: refused, no OverflowError
        GOOD | {"version": 2**63},  # past SQLite's integers
        GOOD | {"placements": [["t", "m", "placed", 2**63, False]]},
        GOOD | {"placements": [["t", "m", [[[]]], 1, False]]},
        GOOD | {"placements": [["t", "m", ["placed"], 1, False]]},
        GOOD | {"pins": [["t", "", 1.0, "x"]]},
        GOOD | {"pins": [["t", "m", 1.0, "x"], ["t", "n", 1.0, "x"]]},
        GOOD | {"placements": [["t", "m", "somewhere", 1, False]]},
        GOOD | {"placements": [["t", "m", "placed", -1, False]]},
        GOOD | {"placements": [["t", "m", "placed", 1, "no"]]},
        GOOD | {"placements": [["t", 7, "placed", 1, False]]},
        GOOD | {"placements": [["x" * 300, "m", "placed", 1, False]]},
        GOOD | {"placements": [["t", "m", "placed", 1, False]] * 2},
        GOOD
        | {"placements": [[f"t{i}", None, "unowned", 0, False] for i in range(MAX_TOPICS + 1)]},
    ],
)
def test_a_peers_malformed_state_is_refused(doc: object) -> None:
    with pytest.raises(PoolRefused):
        PoolState.from_json(doc)


def test_states_are_ordered_by_term_then_version() -> None:
    a = PoolState(term=2, version=9)
    assert newer(a.changed(2), a) and newer(a.changed(3), a) and not newer(a, a)
    assert not newer(PoolState(term=1, version=99), a)
    assert a.changed(3).version == 1 and a.changed(2).version == 10
