"""One contract, every TranscriptStore: MemoryTranscriptStore and SqliteTranscriptStore
(a real file under tmp_path). SQLite only: it survives close and kill -9, and a stored
turn that does not decode is corruption. (What every SQLite file of ours does, private
and refusing what is not ours, is tests/contract/test_sqlite_file.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.core.errors import TranscriptCorrupt, TranscriptError, TranscriptRefused
from baton.core.ledger import MAX_REPLIES
from baton.core.transcript import PutResult, TranscriptStore, TranscriptTurn
from baton.stores.home import HomePaths
from baton.stores.transcript_memory import MemoryTranscriptStore
from baton.stores.transcript_sqlite import SqliteTranscriptStore

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
R = PutResult


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TranscriptStore]:
    made: TranscriptStore = (
        MemoryTranscriptStore()
        if request.param == "memory"
        else SqliteTranscriptStore(tmp_path / "t.sqlite")
    )
    try:
        yield made
    finally:
        made.close()


def add(store: TranscriptStore, n: int, topic: str = "1/0") -> TranscriptTurn:
    return store.append(
        topic, f"memory:{topic}:{n}", n, f"m{n}", replies=(f"r{n}",), at_ms=float(n)
    )


def turn(seq: int, topic: str = "1/0", text: str = "x") -> TranscriptTurn:
    return TranscriptTurn(topic, seq, f"memory:{topic}:{seq}", seq, text, ("r",), float(seq))


def test_append_numbers_each_topic_from_one(store: TranscriptStore) -> None:
    assert store.last_seq("1/0") == 0 and store.last_seqs() == {}
    first = store.append("1/0", "memory:1/0:7", 7, "hello", replies=("hi", "there"), at_ms=5.0)
    assert first == TranscriptTurn("1/0", 1, "memory:1/0:7", 7, "hello", ("hi", "there"), 5.0)
    assert [add(store, n).seq for n in (8, 9)] == [2, 3]
    assert [add(store, n, "2/5").seq for n in (1, 2)] == [1, 2]
    assert store.last_seq("1/0") == 3 and store.last_seq("2/5") == 2
    assert store.last_seq("9/9") == 0
    assert store.last_seqs() == {"1/0": 3, "2/5": 2}


def test_append_is_idempotent_by_ledger_key(store: TranscriptStore) -> None:
    first = add(store, 7)
    add(store, 8)
    again = store.append("1/0", "memory:1/0:7", 99, "other text", replies=("other",), at_ms=50.0)
    assert again == first and again.seq == 1  # the turn as it was: no new seq
    assert store.last_seq("1/0") == 2 and store.turns("1/0", 0, 10)[0] == first
    elsewhere = store.append(
        "2/0", "memory:1/0:7", 7, "m7", replies=("r7",), at_ms=7.0
    )  # another topic
    assert elsewhere.seq == 1 and store.last_seqs() == {"1/0": 2, "2/0": 1}


BAD_APPENDS: dict[str, tuple[object, ...]] = {
    "an empty topic": ("", "k", 1, "t", (), 1.0),
    "an empty key": ("1/0", "", 1, "t", (), 1.0),
    "a bool message id": ("1/0", "k", True, "t", (), 1.0),
    "a lone surrogate": ("1/0", "k", 1, "t\ud800", (), 1.0),
    "a lone surrogate topic": ("\ud800", "k", 1, "t", (), 1.0),
    "too many replies": ("1/0", "k", 1, "t", ("r",) * (MAX_REPLIES + 1), 1.0),
    "a NaN time": ("1/0", "k", 1, "t", (), float("nan")),
}


@pytest.mark.parametrize("args", BAD_APPENDS.values(), ids=list(BAD_APPENDS))
def test_append_refuses_a_malformed_turn_and_stores_nothing(
    store: TranscriptStore, args: tuple[object, ...]
) -> None:
    add(store, 1)
    *front, replies, at_ms = args
    with pytest.raises(TranscriptRefused):
        store.append(*front, replies=replies, at_ms=at_ms)  # type: ignore[arg-type]
    assert store.last_seqs() == {"1/0": 1} and add(store, 2).seq == 2


def test_put_stores_only_the_next_turn(store: TranscriptStore) -> None:
    assert store.put(turn(2)) is R.GAP and store.last_seq("1/0") == 0
    assert store.put(turn(1)) is R.ADDED
    assert store.put(turn(1)) is R.DUPLICATE
    assert store.put(turn(3)) is R.GAP
    assert store.put(turn(2)) is R.ADDED and store.put(turn(3)) is R.ADDED
    assert store.put(turn(2, text="another history")) is R.CONFLICT
    moved = TranscriptTurn("1/0", 4, "memory:1/0:1", 1, "x", ("r",), 1.0)  # key held at 1
    assert store.put(moved) is R.CONFLICT
    assert store.put(turn(1, topic="2/0")) is R.ADDED  # topics are independent
    assert store.turns("1/0", 0, 10) == [turn(1), turn(2), turn(3)]
    assert store.last_seqs() == {"1/0": 3, "2/0": 1}


def test_append_continues_after_put_and_put_after_append(store: TranscriptStore) -> None:
    """A standby that takes over appends after the turns it was sent, and vice versa."""
    for n in (1, 2):
        assert store.put(turn(n)) is R.ADDED
    assert store.append("1/0", "memory:1/0:2", 2, "again", replies=(), at_ms=9.0) == turn(2)
    assert store.append("1/0", "memory:1/0:3", 3, "new", replies=(), at_ms=9.0).seq == 3
    assert store.put(turn(4)) is R.ADDED and store.last_seq("1/0") == 4


def test_turns_ascend_after_a_seq_up_to_a_limit(store: TranscriptStore) -> None:
    made = [add(store, n) for n in range(1, 8)]
    add(store, 1, "2/0")
    assert store.turns("1/0", 0, 100) == made
    assert [t.seq for t in store.turns("1/0", 2, 3)] == [3, 4, 5]
    assert [t.seq for t in store.turns("1/0", 6, 3)] == [7]
    assert store.turns("1/0", 7, 3) == [] and store.turns("1/0", 100, 3) == []
    assert [t.seq for t in store.turns("1/0", -5, 2)] == [1, 2]
    assert store.turns("1/0", 0, 0) == [] and store.turns("1/0", 0, -1) == []
    assert store.turns("9/0", 0, 10) == []


def test_history_is_the_newest_turns_oldest_first(store: TranscriptStore) -> None:
    made = [add(store, n) for n in range(1, 8)]
    add(store, 1, "2/0")
    assert store.history("1/0", 3) == made[4:]
    assert store.history("1/0", 100) == made
    assert store.history("1/0", 0) == [] and store.history("1/0", -2) == []
    assert store.history("9/0", 5) == []


def test_truncate_drops_a_suffix_and_frees_its_keys(store: TranscriptStore) -> None:
    for n in (1, 2, 3, 4):
        add(store, n)
    add(store, 1, "2/0")
    assert store.truncate("1/0", 2) == 2
    assert [t.seq for t in store.turns("1/0", 0, 10)] == [1, 2]
    assert store.last_seqs() == {"1/0": 2, "2/0": 1}  # another topic is untouched
    assert (
        store.append("1/0", "memory:1/0:3", 3, "again", replies=(), at_ms=9.0).seq == 3
    )  # key free
    assert store.put(turn(4)) is R.ADDED
    assert store.truncate("1/0", 9) == 0 and store.truncate("3/0", 0) == 0
    assert store.truncate("1/0", 0) == 4 and store.last_seq("1/0") == 0


def test_threads_append_each_key_once(store: TranscriptStore) -> None:
    def worker(offset: int) -> None:
        for i in range(40):
            add(store, (i + offset) % 40)

    threads = [threading.Thread(target=worker, args=(k * 7,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    turns = store.turns("1/0", 0, 100)
    assert [t.seq for t in turns] == list(range(1, 41))
    assert sorted(t.message_id for t in turns) == list(range(40))


def test_a_closed_store_refuses_calls(store: TranscriptStore) -> None:
    add(store, 1)
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: add(store, 2),
        lambda: store.put(turn(2)),
        lambda: store.turns("1/0", 0, 10),
        lambda: store.history("1/0", 10),
        lambda: store.last_seqs(),
        lambda: store.last_seq("1/0"),
    ]
    for call in calls:
        with pytest.raises(TranscriptError):
            call()
    store.close()  # again: nothing happens


# --- SQLite only ----------------------------------------------------------------------


def test_the_home_names_the_transcript_file(tmp_path: Path) -> None:
    assert HomePaths(tmp_path).transcripts == tmp_path / "data" / "transcripts.sqlite"


def test_sqlite_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    first = SqliteTranscriptStore(path)
    made = [add(first, n) for n in range(1, 4)] + [add(first, 1, "2/0")]
    assert first.put(turn(1, "3/0")) is R.ADDED
    first.close()
    second = SqliteTranscriptStore(path)
    try:
        assert second.turns("1/0", 0, 10) == made[:3] and second.history("2/0", 5) == made[3:]
        assert second.turns("3/0", 0, 10) == [turn(1, "3/0")]
        assert second.last_seqs() == {"1/0": 3, "2/0": 1, "3/0": 1}
        assert add(second, 2) == made[1] and add(second, 9).seq == 4
    finally:
        second.close()


def real_store(path: Path, turns: int = 200) -> None:
    store = SqliteTranscriptStore(path)
    for n in range(turns):
        store.append("1/0", f"memory:1/0:{n}", n, "x" * 300, replies=(), at_ms=1.0)
    store.close()


def sql(path: Path, statement: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(statement)
        db.commit()


def test_a_stored_turn_that_does_not_decode_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    real_store(path, 2)
    sql(path, "UPDATE turns SET doc = '{\"seq\": 1}' WHERE seq = 1")
    sql(path, "UPDATE turns SET topic = '5/0' WHERE seq = 2")
    store = SqliteTranscriptStore(path)
    try:
        with pytest.raises(TranscriptCorrupt, match="turn 1 of '1/0'"):
            store.turns("1/0", 0, 10)
        with pytest.raises(TranscriptCorrupt, match="filed wrongly"):
            store.history("5/0", 10)
        assert store.last_seqs() == {"1/0": 1, "5/0": 2}  # nothing was changed or removed
    finally:
        store.close()


# --- kill -9 ------------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from baton.stores.transcript_sqlite import SqliteTranscriptStore

store = SqliteTranscriptStore(Path(sys.argv[1]))
n = 0
while True:
    turn = store.append("1/0", "k%d" % n, n, "m", replies=("r",), at_ms=float(n))
    print(turn.seq, flush=True)
    n += 1
"""


@pytest.mark.timeout(30)
def test_every_turn_reported_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        deadline, reported = time.monotonic() + 20, 0
        while reported < 50:  # readline returns as soon as the writer reports a turn
            assert time.monotonic() < deadline, f"only {reported} turns reported in time"
            line = proc.stdout.readline()
            assert line, f"the writer exited early ({proc.wait(timeout=5)})"
            reported = int(line)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    store = SqliteTranscriptStore(path)
    try:
        turns = store.turns("1/0", 0, 100_000)
        assert len(turns) >= reported
        assert [t.seq for t in turns] == list(range(1, len(turns) + 1))
        assert [t.ledger_key for t in turns] == [f"k{n}" for n in range(len(turns))]
        assert json.dumps(turns[0].to_json())  # decodes and re-encodes whole
    finally:
        store.close()
