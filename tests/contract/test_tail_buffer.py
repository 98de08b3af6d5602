"""One contract, every LiveTailBuffer: MemoryLiveTailBuffer and SqliteLiveTailBuffer (a real file
under tmp_path). SQLite only: it survives close and reopen and stores the sealed boxes
as they came; a row that is not a frame is corruption. (What every SQLite file of ours
does, private and refusing what is not ours, is tests/contract/test_sqlite_file.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.core.errors import TailCorrupt, TailError
from baton.core.live_tail import FrameResult, LiveTailBuffer, TailFrame
from baton.stores.home import HomePaths
from baton.stores.tail_memory import MemoryLiveTailBuffer
from baton.stores.tail_sqlite import SqliteLiveTailBuffer

pytestmark = pytest.mark.timeout(60)

R = FrameResult


@pytest.fixture(params=["memory", "sqlite"])
def buf(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveTailBuffer]:
    made: LiveTailBuffer = (
        MemoryLiveTailBuffer()
        if request.param == "memory"
        else SqliteLiveTailBuffer(tmp_path / "b.sqlite")
    )
    try:
        yield made
    finally:
        made.close()


def frame(seq: int, tag: str = "", topic: str = "1/0", prev_tag: str | None = None) -> TailFrame:
    """Frame ``seq`` of a chain whose keys are k1, k2, ... (a tag marks another chain)."""
    prev = "" if seq == 1 else f"k{seq - 1}{tag if prev_tag is None else prev_tag}"
    return TailFrame(topic, seq, f"k{seq}{tag}", prev, f"box{seq}{tag}".encode())


def fill(buf: LiveTailBuffer, n: int, tag: str = "", topic: str = "1/0") -> None:
    for seq in range(1, n + 1):
        assert buf.take(frame(seq, tag, topic), None) is R.ADDED


def keys(buf: LiveTailBuffer, topic: str = "1/0") -> list[str]:
    return [f.key for f in buf.frames(topic, 0, 1000)]


def test_frames_extend_each_topic_from_one(buf: LiveTailBuffer) -> None:
    assert buf.heads() == {} and buf.dirty() == {}
    fill(buf, 3)
    fill(buf, 1, topic="2/0")
    assert buf.heads() == {"1/0": (3, "k3"), "2/0": (1, "k1")}
    assert buf.frames("1/0", 1, 1) == [frame(2)]
    assert buf.frames("1/0", 3, 5) == [] and buf.frames("1/0", 0, 0) == []
    assert buf.dirty() == {"1/0": 1, "2/0": 1}


def test_a_frame_that_does_not_fit_is_refused(buf: LiveTailBuffer) -> None:
    assert buf.take(frame(2), None) is R.REFUSED  # nothing at 1 yet
    fill(buf, 2)
    assert buf.take(frame(4), None) is R.REFUSED  # a gap
    assert buf.take(frame(3, prev_tag="x"), None) is R.REFUSED  # prev is another chain's
    assert buf.take(frame(3, prev_tag="x"), 3) is R.REFUSED  # a refused head cuts nothing
    assert keys(buf) == ["k1", "k2"]


def test_a_repeat_keeps_what_is_held(buf: LiveTailBuffer) -> None:
    fill(buf, 2)
    buf.clean("1/0")
    again = TailFrame("1/0", 2, "k2", "k1", b"resealed")
    assert buf.take(again, None) is R.DUPLICATE
    assert buf.frames("1/0", 1, 1)[0].box == b"box2" and buf.dirty() == {}


def test_the_holders_chain_replaces_a_parted_suffix(buf: LiveTailBuffer) -> None:
    fill(buf, 4, "x")  # another holder's chain ...
    buf.clean("1/0")
    assert buf.take(frame(1), None) is R.REPLACED  # ... parted from this one at 1
    assert keys(buf) == ["k1"] and buf.dirty() == {"1/0": 1}
    fill(buf, 3, "y", "2/0")
    buf.clean("2/0")
    assert buf.take(frame(3, "z", "2/0", prev_tag="y"), None) is R.REPLACED
    assert keys(buf, "2/0") == ["k1y", "k2y", "k3z"] and buf.dirty()["2/0"] == 3


def test_the_holders_head_drops_what_lies_beyond_it(buf: LiveTailBuffer) -> None:
    fill(buf, 5)
    assert buf.take(frame(3), 3) is R.DUPLICATE
    assert keys(buf) == ["k1", "k2", "k3"] and buf.heads()["1/0"] == (3, "k3")
    assert buf.take(frame(4), 9) is R.ADDED and keys(buf)[-1] == "k4"


def test_prune_drops_the_frames_below_and_the_chain_goes_on(buf: LiveTailBuffer) -> None:
    fill(buf, 5)
    fill(buf, 2, topic="2/0")
    assert buf.prune("1/0", 4) == 3
    assert keys(buf) == ["k4", "k5"] and buf.heads()["1/0"] == (5, "k5")
    assert buf.frames("1/0", 0, 1) == [frame(4)] and buf.frames("1/0", 4, 5) == [frame(5)]
    assert keys(buf, "2/0") == ["k1", "k2"]  # another topic is untouched
    assert buf.take(frame(6), None) is R.ADDED  # it extends from what is left
    assert buf.take(frame(5), None) is R.DUPLICATE
    assert buf.take(frame(5, "x", prev_tag=""), None) is R.REPLACED  # above what is left
    assert keys(buf) == ["k4", "k5x"]
    assert buf.take(frame(3), None) is R.REFUSED  # below it: no prev to fit
    assert buf.take(frame(1, "y"), None) is R.ADDED  # seq 1 starts the chain afresh
    assert keys(buf) == ["k1y"]


def test_prune_never_drops_the_last_frame(buf: LiveTailBuffer) -> None:
    fill(buf, 3)
    assert buf.prune("1/0", 10) == 2
    assert keys(buf) == ["k3"] and buf.prune("1/0", 10) == 0
    assert buf.prune("9/0", 5) == 0 and buf.heads() == {"1/0": (3, "k3")}


def test_clean_forgets_a_topic_until_it_changes_again(buf: LiveTailBuffer) -> None:
    fill(buf, 2)
    buf.clean("1/0")
    buf.clean("9/9")  # not dirty: nothing to do
    assert buf.dirty() == {}
    assert buf.take(frame(3), None) is R.ADDED and buf.dirty() == {"1/0": 3}
    assert buf.take(frame(2, "x", prev_tag=""), None) is R.REPLACED
    assert buf.dirty() == {"1/0": 2}  # the lowest seq that changed


def test_a_closed_buffer_refuses_calls(buf: LiveTailBuffer) -> None:
    buf.close()
    buf.close()
    for call in (lambda: buf.take(frame(1), None), buf.heads, buf.dirty):
        with pytest.raises(TailError):
            call()


# --- SQLite only --------------------------------------------------------------------


def test_the_home_names_the_buffer_file(tmp_path: Path) -> None:
    assert HomePaths(tmp_path).tail_buffer == tmp_path / "data" / "tail" / "buffer.sqlite"


def test_sqlite_survives_reopen_and_keeps_the_boxes_as_they_came(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    first = SqliteLiveTailBuffer(path)
    fill(first, 3)
    first.close()
    again = SqliteLiveTailBuffer(path)
    try:
        assert again.frames("1/0", 0, 9) == [frame(1), frame(2), frame(3)]
        assert again.dirty() == {"1/0": 1}
    finally:
        again.close()
    with sqlite3.connect(path) as db:  # the turns themselves are only in the boxes
        assert db.execute("SELECT box FROM frames WHERE seq = 1").fetchone() == (b"box1",)


def test_a_row_that_is_not_a_frame_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = SqliteLiveTailBuffer(path)
    fill(buf, 2)
    buf.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE frames SET prev = '' WHERE seq = 2")
    buf = SqliteLiveTailBuffer(path)
    try:
        with pytest.raises(TailCorrupt, match="frame 2 of '1/0'"):
            buf.frames("1/0", 0, 9)
        assert buf.heads() == {"1/0": (2, "k2")}  # nothing was changed or removed
    finally:
        buf.close()
