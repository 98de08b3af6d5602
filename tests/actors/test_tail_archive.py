"""The transcript archive's two sides (baton.actors.tail_archive) over in-memory stores
and real files: the holder's parts equal its transcripts, redacted, rewritten where they
changed under it; a standby takes them in by the replay's rules, a bounded amount a
step, and prunes its buffer to what the archive lacks; a takeover after pruning loses
no turn. Between the machines the archive moves by a copy of the directory here (the
real git sync: tests/system/test_state_sync.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.actors.tail_archive import PARTS_PER_STEP, TURNS_PER_STEP, ArchiveIn, ArchiveOut, prune
from baton.actors.tail_messages import GetTail
from baton.adapters.metrics import Counters
from baton.channels.memory import MemoryChannel
from baton.core.live_tail import TailFrame, compile_redactions
from baton.core.transcript import TranscriptTurn
from baton.core.transcript_archive import TranscriptArchive, decode_part, encode_part
from baton.stores.tail_memory import MemoryLiveTailBuffer
from baton.stores.transcript_archive import FileTranscriptArchive
from baton.stores.transcript_memory import MemoryTranscriptStore
from tests.actors.machines import (
    Machine,
    all_answered,
    bot_texts,
    make_pair,
    post_many,
    tail_caught_up,
)
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)

PATTERNS = compile_redactions([r"(?i)password:\s*(?P<secret>\S+)"])


def fill(store: MemoryTranscriptStore, topic: str, n: int, tag: str = "") -> None:
    for i in range(1, n + 1):
        store.append(topic, f"{topic}:{i}{tag}", i, f"m{i}{tag}", replies=(f"r{i}",), at_ms=i)


def keys(store: MemoryTranscriptStore, topic: str) -> list[str]:
    return [t.ledger_key for t in store.turns(topic, 0, 100_000)]


def archived(archive: TranscriptArchive, topic: str) -> list[TranscriptTurn]:
    turns: list[TranscriptTurn] = []
    for part in archive.parts(topic):
        data = archive.read(topic, part)
        assert data is not None
        decoded = decode_part(topic, part, data)
        assert decoded.error == ""
        turns += decoded.turns
    return turns


def write_all(out: ArchiveOut, store: MemoryTranscriptStore) -> int:
    steps = 0
    while out.pending:
        out.step(store, 0)
        steps += 1
        assert steps < 100, "the archive never settles"
    return steps


@pytest.fixture
def archive(tmp_path: Path) -> TranscriptArchive:
    return FileTranscriptArchive(tmp_path / "state")


def test_the_holders_parts_are_its_transcripts_redacted_a_bounded_number_a_step(
    archive: TranscriptArchive,
) -> None:
    store, counters = MemoryTranscriptStore(), Counters()
    fill(store, "-1/0", 2250)
    fill(store, "2/0", 3)
    store.append("2/0", "2/0:secret", 4, "my password: hunter2", replies=("ok",), at_ms=4)
    out = ArchiveOut(archive, PATTERNS, counters)
    out.begin(store.last_seqs())
    out.step(store, 0)
    assert counters.get("tail.archive_written") == PARTS_PER_STEP  # 23 parts: not in one step
    assert write_all(out, store) >= 1
    assert archive.parts("-1/0") == list(range(23)) and archive.parts("2/0") == [0]
    assert archived(archive, "-1/0") == store.turns("-1/0", 0, 100_000)
    secret = archived(archive, "2/0")[-1]
    assert secret.text == "my password: [redacted]" and store.history("2/0", 1)[0].text.endswith(
        "hunter2"
    )
    assert b"hunter2" not in b"".join(
        p.read_bytes() for p in archive.root.rglob("*") if p.is_file()
    )
    # a new term checks every part: nothing differs, nothing is written
    out.begin(store.last_seqs())
    write_all(out, store)
    assert counters.get("tail.archive_written") == 24


def test_a_turn_rewrites_its_part_alone_and_a_changed_file_is_put_right(
    archive: TranscriptArchive,
) -> None:
    store, counters = MemoryTranscriptStore(), Counters()
    fill(store, "t", 150)
    out = ArchiveOut(archive, (), counters)
    out.begin(["t"])
    write_all(out, store)
    first = (archive.root / "t" / "000000.jsonl").stat().st_ino
    turn = store.append("t", "t:151", 151, "new", replies=(), at_ms=1)
    out.changed("t", turn.seq)
    write_all(out, store)
    assert (archive.root / "t" / "000000.jsonl").stat().st_ino == first  # untouched
    assert archived(archive, "t")[-1] == turn
    # a pull (or the agent, unsandboxed) writes over a part, and adds one beyond
    archive.write("t", 0, b"garbage\n")
    archive.write("t", 5, encode_part([]))
    out.look(["t"], 0)
    write_all(out, store)
    assert archived(archive, "t") == store.turns("t", 0, 1000) and archive.parts("t") == [0, 1]
    # a replay cut the transcript short: the archive follows
    store.truncate("t", 80)
    out.begin(["t"])
    write_all(out, store)
    assert archive.parts("t") == [0] and len(archived(archive, "t")) == 80


def test_a_file_system_that_fails_is_counted_and_the_work_waits(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "transcripts").write_text("a file in the way")
    archive, store, counters = (
        FileTranscriptArchive(tmp_path / "state"),
        MemoryTranscriptStore(),
        Counters(),
    )
    fill(store, "t", 3)
    out = ArchiveOut(archive, (), counters)
    out.begin(["t"])
    for _ in range(3):
        out.step(store, 0)  # never raises
    assert counters.get("tail.archive_errors") == 3 and out.pending == {"t": 0}
    into = ArchiveIn(archive, counters)
    assert into.step(store, 0).turns == 0 and counters.get("tail.archive_errors") == 4
    (tmp_path / "state" / "transcripts").unlink()
    write_all(out, store)
    assert len(archived(archive, "t")) == 3


def test_a_standby_takes_the_archive_in_a_bounded_number_a_step(
    archive: TranscriptArchive,
) -> None:
    holder, standby, counters = MemoryTranscriptStore(), MemoryTranscriptStore(), Counters()
    fill(holder, "t", 250)
    fill(holder, "u", 20)
    out = ArchiveOut(archive, (), Counters())
    out.begin(holder.last_seqs())
    write_all(out, holder)
    into = ArchiveIn(archive, counters)
    first = into.step(standby, 0)
    assert first.turns == TURNS_PER_STEP and into.more
    second = into.step(standby, 0)
    assert first.turns + second.turns == 270 and not into.more
    assert standby.turns("t", 0, 1000) == holder.turns("t", 0, 1000)
    assert standby.turns("u", 0, 1000) == holder.turns("u", 0, 1000)
    assert into.step(standby, 0).turns == 0  # nothing changed: nothing read again
    assert counters.get("tail.archive_taken") == 270


def test_where_this_machines_own_turns_part_from_the_archive_the_archive_wins(
    archive: TranscriptArchive,
) -> None:
    holder, mine, counters = MemoryTranscriptStore(), MemoryTranscriptStore(), Counters()
    fill(holder, "t", 130)
    fill(mine, "t", 3)
    mine.append("t", "t:mine", 4, "nobody saw this", replies=(), at_ms=1)  # parted
    out = ArchiveOut(archive, (), Counters())
    out.begin(["t"])
    write_all(out, holder)
    done = ArchiveIn(archive, counters).step(mine, 0, budget=None)
    assert keys(mine, "t") == keys(holder, "t") and done.dropped == 1
    assert counters.get("tail.parted") == 1


def test_a_bad_line_ends_the_taking_there(archive: TranscriptArchive) -> None:
    holder, standby, counters = MemoryTranscriptStore(), MemoryTranscriptStore(), Counters()
    fill(holder, "t", 10)
    good = encode_part(holder.turns("t", 0, 5))
    archive.write("t", 0, good + b'{"deep": ' + b"[" * 5000 + b"\n" + encode_part([]))
    into = ArchiveIn(archive, counters)
    into.step(standby, 0)
    assert keys(standby, "t") == keys(holder, "t")[:5]
    assert counters.get("tail.archive_bad") == 1
    into.step(standby, 0)  # not read again until it changes
    assert counters.get("tail.archive_bad") == 1


def frames_of(store: MemoryTranscriptStore, topic: str, tag: str = "") -> list[TailFrame]:
    turns = store.turns(topic, 0, 1000)
    return [
        TailFrame(
            topic, t.seq, t.ledger_key + tag, "" if i == 0 else turns[i - 1].ledger_key + tag, b"x"
        )
        for i, t in enumerate(turns)
    ]


def test_the_buffer_keeps_only_what_the_transcripts_lack() -> None:
    standby, counters = MemoryTranscriptStore(), Counters()
    full = MemoryTranscriptStore()
    fill(full, "t", 10)
    fill(standby, "t", 7)
    buffer = MemoryLiveTailBuffer()
    for frame in frames_of(full, "t"):
        buffer.take(frame, None)
    assert prune(buffer, standby, counters) == 6
    assert [f.seq for f in buffer.frames("t", 0, 100)] == [7, 8, 9, 10]
    assert prune(buffer, standby, counters) == 0 and counters.get("tail.pruned") == 6
    other = MemoryLiveTailBuffer()  # a buffer of another chain: kept whole
    for frame in frames_of(full, "t", tag="x"):
        other.take(frame, None)
    assert prune(other, standby, counters) == 0 and len(other.frames("t", 0, 100)) == 10


@pytest.fixture
def archived_pair(tmp_path: Path) -> Iterator[tuple[MemoryChannel, Machine, Machine]]:
    channel, a, b = make_pair((tmp_path / "a", tmp_path / "b"))
    try:
        yield channel, a, b
    finally:
        a.stop()
        b.stop()


def sync(src: Machine, dst: Machine) -> None:
    """What StateSync does for the archive: the holder's tree on the standby."""
    assert src.state is not None and dst.state is not None
    shutil.rmtree(dst.state / "transcripts", ignore_errors=True)
    shutil.copytree(src.state / "transcripts", dst.state / "transcripts")


def test_a_takeover_after_the_buffer_was_pruned_loses_no_turn(
    archived_pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = archived_pair
    a.hold(1)
    ids = post_many(channel, 9)
    wait_for(lambda: all_answered(channel, ids), 20, "answered")
    wait_for(lambda: tail_caught_up(a, b), 10, "the live tail")
    assert a.state is not None
    a_archive = FileTranscriptArchive(a.state)
    done = a.transcripts.last_seqs()
    wait_for(
        lambda: all(len(archived(a_archive, t)) == n for t, n in done.items()),
        10,
        "a's archive",
    )
    sync(a, b)
    wait_for(lambda: b.transcripts.last_seqs() == done, 10, "b takes the archive in")
    wait_for(
        lambda: all(len(b.buffer.frames(t, 0, 100)) == 1 for t in done), 10, "b prunes its buffer"
    )
    assert b.counters.get("tail.pruned") == 6
    more = post_many(channel, 3, start=9)  # after the pruning: in b's buffer alone
    wait_for(lambda: all_answered(channel, more), 20, "answered")
    wait_for(lambda: tail_caught_up(a, b), 10, "the live tail again")
    a.hold(None)
    b.hold(2)
    last = post_many(channel, 3, start=12)
    wait_for(lambda: all_answered(channel, last), 20, "b answers")
    for topic in ("t0", "t1", "t2"):
        assert bot_texts(channel, topic)[-1].endswith("(earlier turns: 4)")  # 3 + 1 + 1 kept
    assert b.state is not None
    b_archive = FileTranscriptArchive(b.state)
    wait_for(
        lambda: all(archived(b_archive, t) == b.transcripts.turns(t, 0, 100) for t in done),
        10,
        "b, holding, writes the archive",
    )
    wait_for(lambda: b.tail.ask(GetTail(), timeout=5)["archive"] == {"pending": 0}, 10, "settled")
