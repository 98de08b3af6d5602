"""One contract, every TopicPlacementPinStore: MemoryPoolStore and SqlitePoolStore (a real
file under tmp_path). The empty state first; a newer state kept, an older or equal one
refused (a deposed holder's late change never overwrites a newer holder's); closed means
closed. SQLite only: it survives reopen; a row that does not decode is corruption, and
the file is left untouched. (What every SQLite file of ours does, private and refusing
what is not ours, is tests/contract/test_sqlite_file.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.core.errors import PoolCorrupt, PoolError
from baton.core.pool_placement import Pin, Placement, Reason
from baton.core.pool_state import PoolState, TopicPlacementPinStore
from baton.stores.home import HomePaths
from baton.stores.pool_memory import MemoryPoolStore
from baton.stores.pool_sqlite import SqlitePoolStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TopicPlacementPinStore]:
    made: TopicPlacementPinStore = (
        MemoryPoolStore() if request.param == "memory" else SqlitePoolStore(tmp_path / "p.sqlite")
    )
    try:
        yield made
    finally:
        made.close()


STATE = PoolState(
    True,
    {"t1": Pin("t1", "m_b", 12.5, "m_a")},
    {"t1": Placement("t1", "m_b", Reason.PINNED, 3), "t2": Placement("t2", None, Reason.UNOWNED)},
    term=4,
    version=7,
)


def test_the_empty_state_first_then_only_newer_ones(store: TopicPlacementPinStore) -> None:
    assert store.load() == PoolState() and not store.load().enabled
    assert store.keep(STATE) and store.load() == STATE
    assert not store.keep(STATE)  # the same: nothing new
    older_term = STATE.changed(3)  # a deposed holder's late change
    assert older_term.term == 3 and not store.keep(older_term)
    later = STATE.changed(4, enabled=False)
    assert later.version == 8 and store.keep(later) and store.load() == later
    next_term = later.changed(5)
    assert next_term.version == 1 and store.keep(next_term) and store.load().term == 5


def test_a_closed_store_refuses_calls(store: TopicPlacementPinStore) -> None:
    store.close()
    store.close()  # again: nothing
    with pytest.raises(PoolError):
        store.load()
    with pytest.raises(PoolError):
        store.keep(STATE)


def test_the_home_names_the_pool_file(tmp_path: Path) -> None:
    assert HomePaths(tmp_path).pool == tmp_path / "data" / "pool.sqlite"


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    first = SqlitePoolStore(tmp_path / "p.sqlite")
    first.keep(STATE)
    first.close()
    again = SqlitePoolStore(tmp_path / "p.sqlite")
    try:
        assert again.load() == STATE
    finally:
        again.close()


@pytest.mark.parametrize(
    "doc",
    ['{"enabled": true}', "[" * 5000, '{"enabled": 1, "term": 4, "version": 7, "pins": [], '
     '"placements": []}', "not json"],
)  # fmt: skip
def test_a_row_that_does_not_decode_is_corruption_left_untouched(tmp_path: Path, doc: str) -> None:
    path = tmp_path / "p.sqlite"
    SqlitePoolStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO state VALUES (1, 4, 7, ?)", (doc,))
    db.close()
    before = path.read_bytes()
    bad = SqlitePoolStore(path)
    try:
        with pytest.raises(PoolCorrupt, match="does not decode"):
            bad.load()
        with pytest.raises(PoolCorrupt):
            bad.keep(STATE.changed(9))
    finally:
        bad.close()
    assert path.read_bytes() == before
