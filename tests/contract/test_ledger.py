"""One contract, every MessageProcessingLedger: MemoryLedger and SqliteLedger (a real file
under tmp_path). SQLite only: it survives close and kill -9 (also while it is being
created). (What every SQLite file of ours does, private and refusing what is not ours,
is tests/contract/test_sqlite_file.py.)"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.core.errors import LedgerCorrupt, LedgerError, LedgerTransitionError, UnknownEntry
from baton.core.inbound import MESSAGE_KINDS, InboundMessage
from baton.core.ledger import (
    MAX_REPLIES,
    LedgerEntry,
    LedgerState,
    MessageProcessingLedger,
    ReplyMarker,
    begin,
    marker_for,
    prepare,
)
from baton.stores.ledger_memory import MemoryLedger
from baton.stores.ledger_sqlite import SqliteLedger

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
S = LedgerState


def msg(
    message_id: int, update_id: int | None = None, chat: int = 1, thread: int = 0
) -> InboundMessage:
    update = message_id if update_id is None else update_id
    return InboundMessage("memory", update, chat, thread, message_id, f"m{message_id}", "ann")


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MessageProcessingLedger]:
    made: MessageProcessingLedger = (
        MemoryLedger() if request.param == "memory" else SqliteLedger(tmp_path / "l.sqlite")
    )
    try:
        yield made
    finally:
        made.close()


def finish(
    ledger: MessageProcessingLedger, key: str, now: float, replies: tuple[str, ...] = ("r",)
) -> None:
    """Take an entry all the way to acked."""
    ledger.begin(key, now)
    ledger.prepare(key, replies, 1, now)
    for n in range(len(replies)):
        ledger.commit(key, n, 1000 + n, 1, now)
    ledger.ack(key, now)


def test_record_is_idempotent(ledger: MessageProcessingLedger) -> None:
    entry, new = ledger.record(msg(7), 1.0)
    assert new and entry.state is S.RECEIVED and entry.received_ms == 1.0
    ledger.begin(entry.key, 2.0)
    again, new = ledger.record(msg(7), 3.0)
    assert not new and again.state is S.PROCESSING and again == ledger.get(entry.key)
    assert ledger.counts()[S.PROCESSING.value] == 1 and sum(ledger.counts().values()) == 1


def test_the_full_lifecycle(ledger: MessageProcessingLedger) -> None:
    key = ledger.record(msg(7), 1.0)[0].key
    assert ledger.begin(key, 2.0).attempts == 1
    assert ledger.fail(key, "agent crashed", 3.0).last_error == "agent crashed"
    assert ledger.begin(key, 4.0).attempts == 2
    prepared = ledger.prepare(key, ["one", "two"], 5, 5.0)
    assert prepared.state is S.PREPARED and prepared.prepared_epoch == 5
    assert ledger.prepare(key, ["other"], 6, 6.0) == prepared  # the first texts win
    assert ledger.commit(key, 1, 71, 5, 7.0).state is S.PREPARED
    assert ledger.commit(key, 1, 99, 6, 7.5).replies[1].message_id == 71
    committed = ledger.commit(key, 0, 70, 5, 8.0)
    assert committed.state is S.COMMITTED and committed.uncommitted() == ()
    acked = ledger.ack(key, 9.0)
    assert acked.done and acked.updated_ms == 9.0 and ledger.get(key) == acked
    assert [(r.text, r.message_id, r.epoch) for r in acked.replies] == [
        ("one", 70, 5),
        ("two", 71, 5),
    ]


def test_an_illegal_step_raises_and_changes_nothing(ledger: MessageProcessingLedger) -> None:
    key = ledger.record(msg(7), 1.0)[0].key
    before = ledger.get(key)
    steps: list[Callable[[], object]] = [
        lambda: ledger.ack(key, 2.0),
        lambda: ledger.fail(key, "x", 2.0),
        lambda: ledger.commit(key, 0, 1, 1, 2.0),
        lambda: ledger.prepare(key, ["r"] * (MAX_REPLIES + 1), 1, 2.0),
    ]
    for step in steps:
        with pytest.raises(LedgerTransitionError):
            step()
        assert ledger.get(key) == before
    ledger.begin(key, 3.0)
    ledger.prepare(key, ["r"], 1, 4.0)
    with pytest.raises(LedgerTransitionError):
        ledger.commit(key, 1, 1, 1, 5.0)
    assert ledger.get(key) == ledger.prepare(key, ["r"], 1, 4.0)


def test_unknown_keys(ledger: MessageProcessingLedger) -> None:
    assert ledger.get("memory:1/0:404") is None
    steps: list[Callable[[str], object]] = [
        lambda k: ledger.begin(k, 1.0),
        lambda k: ledger.fail(k, "x", 1.0),
        lambda k: ledger.prepare(k, ["r"], 1, 1.0),
        lambda k: ledger.commit(k, 0, 1, 1, 1.0),
        lambda k: ledger.ack(k, 1.0),
    ]
    for step in steps:
        with pytest.raises(UnknownEntry) as caught:
            step("memory:1/0:404")
        assert caught.value.code == "ledger_unknown"


def test_markers_create_and_advance_entries_once(ledger: MessageProcessingLedger) -> None:
    holder = MemoryLedger()
    key = holder.record(msg(7), 1.0)[0].key
    holder.begin(key, 1.0)
    prepared = marker_for(holder.prepare(key, ["a", "b"], 4, 2.0), "prepared", 4)
    c0 = marker_for(holder.commit(key, 0, 50, 4, 3.0), "committed", 4, 0)
    c1 = marker_for(holder.commit(key, 1, 51, 4, 4.0), "committed", 4, 1)
    assert ledger.apply_marker(c1, 10.0).state is S.PREPARED  # created from a commit
    first = ledger.apply_marker(prepared, 11.0)
    assert first == ledger.get(key) and ledger.apply_marker(c1, 12.0) == first
    done = ledger.apply_marker(c0, 13.0)
    source = holder.get(key)
    assert source is not None and done.state is S.COMMITTED and done.replies == source.replies
    acked = ledger.ack(key, 14.0)
    for marker in (prepared, c0, c1):
        assert ledger.apply_marker(marker, 15.0) == acked == ledger.get(key)


def test_a_message_keeps_its_kind(ledger: MessageProcessingLedger) -> None:
    keys = {}
    for n, kind in enumerate(MESSAGE_KINDS, 1):
        text = "" if kind in ("photo", "other") else f"said {kind}"
        message = InboundMessage("memory", n, 1, 0, n, text, "ann", kind)
        entry, new = ledger.record(message, 1.0)
        assert new and (entry.kind, entry.text) == (kind, text)
        keys[kind] = entry.key
    finish(ledger, keys["sticker"], 2.0)
    ledger.begin(keys["photo"], 2.0)
    assert {kind: ledger.get(key).kind for kind, key in keys.items()} == {  # type: ignore[union-attr]
        kind: kind for kind in MESSAGE_KINDS
    }
    assert {e.key: e.kind for e in ledger.pending()} == {
        key: kind for kind, key in keys.items() if kind != "sticker"
    }


def test_a_marker_from_a_peer_before_kinds_makes_a_text_entry(
    ledger: MessageProcessingLedger,
) -> None:
    holder = MemoryLedger()
    key = holder.record(msg(7), 1.0)[0].key
    holder.begin(key, 1.0)
    doc = marker_for(holder.prepare(key, ["a"], 4, 2.0), "prepared", 4).to_json()
    assert "message_kind" not in doc  # what the version before kinds sends
    entry = ledger.apply_marker(ReplyMarker.from_json(doc), 3.0)
    assert (entry.kind, entry.state, entry.text) == ("text", S.PREPARED, "m7")


def test_a_marker_carries_the_message_kind_to_a_standby(ledger: MessageProcessingLedger) -> None:
    photo = InboundMessage("memory", 8, 1, 0, 8, "my cat", "ann", "photo")
    entry = prepare(begin(LedgerEntry.of(photo, 1.0), 1.0), ["nice"], 4, 2.0)
    doc = json.loads(json.dumps(marker_for(entry, "prepared", 4).to_json()))
    assert doc.get("message_kind") == "photo"
    made = ledger.apply_marker(ReplyMarker.from_json(doc), 3.0)
    assert (made.kind, made.text, made.state) == ("photo", "my cat", S.PREPARED)


def test_pending_is_every_entry_not_acked_in_update_order(ledger: MessageProcessingLedger) -> None:
    ledger.record(msg(30, update_id=3), 1.0)
    ledger.record(msg(10, update_id=1), 1.0)
    finish(ledger, ledger.record(msg(20, update_id=2), 1.0)[0].key, 2.0)
    ledger.record(msg(29, update_id=3), 1.0)  # same update id: by message id
    holder = MemoryLedger()
    holder.record(InboundMessage("memory", 0, 1, 0, 5, "x", "ann"), 1.0)
    holder.begin("memory:1/0:5", 1.0)
    marker = marker_for(holder.prepare("memory:1/0:5", ["r"], 1, 1.0), "prepared", 1)
    ledger.apply_marker(marker, 1.0)  # this entry's update id is 0
    for n in (41, 40):  # created from markers without an update id: last, by message id
        nameless = marker.to_json() | {"update_id": None, "message_id": n, "key": f"memory:1/0:{n}"}
        ledger.apply_marker(ReplyMarker.from_json(nameless), 1.0)
    ledger.begin("memory:1/0:10", 3.0)
    assert [(e.update_id, e.message_id) for e in ledger.pending()] == [
        (0, 5),
        (1, 10),
        (3, 29),
        (3, 30),
        (None, 40),
        (None, 41),
    ]


def test_prune_never_deletes_a_pending_entry(ledger: MessageProcessingLedger) -> None:
    keys = [ledger.record(msg(n), 0.0)[0].key for n in range(6)]
    ledger.begin(keys[1], 0.0)
    ledger.prepare(keys[2], ["r"], 1, 0.0)
    ledger.prepare(keys[3], ["r"], 1, 0.0)
    ledger.commit(keys[3], 0, 1, 1, 0.0)  # committed, not acked: the cursor is behind it
    finish(ledger, keys[4], 0.0)
    finish(ledger, keys[5], 0.0)
    assert ledger.prune(now_ms=10**12, max_age_ms=1.0, max_entries=0) == 2
    assert [e.key for e in ledger.pending()] == keys[:4]
    assert ledger.counts()[S.ACKED.value] == 0


def test_prune_honours_age_then_count(ledger: MessageProcessingLedger) -> None:
    keys = [ledger.record(msg(n), 0.0)[0].key for n in range(10)]
    for n, key in enumerate(keys[:8]):
        finish(ledger, key, float(100 * n))  # acked at 0, 100, ..., 700
    assert ledger.prune(now_ms=750.0, max_age_ms=1000.0, max_entries=100) == 0
    assert ledger.prune(now_ms=1250.0, max_age_ms=1000.0, max_entries=100) == 3  # 0..200
    assert ledger.get(keys[2]) is None and ledger.get(keys[3]) is not None
    assert ledger.prune(now_ms=1250.0, max_age_ms=1000.0, max_entries=5) == 2  # oldest first
    assert ledger.get(keys[4]) is None and ledger.get(keys[5]) is not None
    assert sum(ledger.counts().values()) == 5 and ledger.prune(1250.0, 1000.0, 5) == 0
    assert ledger.prune(now_ms=1250.0, max_age_ms=1000.0, max_entries=1) == 3
    assert {e.key for e in ledger.pending()} == set(keys[8:])


def test_the_user_message_queue(ledger: MessageProcessingLedger) -> None:
    assert ledger.queue_items() == []
    assert ledger.queue_put("id-b", "1/0", "second", 20.0)
    assert ledger.queue_put("id-a", "1/0", "first", 10.0)
    assert ledger.queue_put("id-c", "2/0", "third", 20.0)
    assert not ledger.queue_put("id-a", "1/0", "changed", 30.0)
    items = ledger.queue_items()
    assert [(q.item_id, q.text, q.queued_ms) for q in items] == [
        ("id-a", "first", 10.0),
        ("id-b", "second", 20.0),
        ("id-c", "third", 20.0),
    ]
    ledger.queue_remove("id-b")
    ledger.queue_remove("id-b")  # gone already: not an error
    assert [q.item_id for q in ledger.queue_items()] == ["id-a", "id-c"]
    assert ledger.queue_items()[1].topic == "2/0"


def test_the_queue_refuses_what_cannot_be_stored(ledger: MessageProcessingLedger) -> None:
    with pytest.raises(LedgerTransitionError):
        ledger.queue_put("id-x", "1/0", "lone \ud800 surrogate", 1.0)
    assert ledger.queue_items() == []
    assert ledger.queue_put("id-x", "1/0", "fine \u2603", 1.0)
    assert ledger.queue_items()[0].text == "fine \u2603"


def test_counts_name_every_state(ledger: MessageProcessingLedger) -> None:
    assert ledger.counts() == {s.value: 0 for s in S}
    ledger.record(msg(1), 1.0)
    ledger.begin(ledger.record(msg(2), 1.0)[0].key, 1.0)
    finish(ledger, ledger.record(msg(3), 1.0)[0].key, 1.0)
    assert ledger.counts() == {
        "received": 1,
        "processing": 1,
        "reply-prepared": 0,
        "reply-committed": 0,
        "acked": 1,
    }


def test_threads_record_each_message_once(ledger: MessageProcessingLedger) -> None:
    news: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for n in range(40):
            _, new = ledger.record(msg(n), 1.0)
            with lock:
                news.append(new)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(news) == 160 and news.count(True) == 40
    assert ledger.counts()["received"] == 40


def test_a_batch_is_one_transaction_all_or_nothing(ledger: MessageProcessingLedger) -> None:
    """The delivery actor's group commit: a step's writes land together, or none does
    (here the third write is illegal: the two before it are taken back)."""
    key = ledger.record(msg(7), 1.0)[0].key
    with ledger.batch():
        ledger.record(msg(8), 2.0)
        assert ledger.begin(key, 2.0).state is S.PROCESSING  # seen inside the batch
    assert ledger.get(key).state is S.PROCESSING and len(ledger.pending()) == 2  # type: ignore[union-attr]
    before = ledger.pending()
    with pytest.raises(LedgerTransitionError), ledger.batch():
        ledger.prepare(key, ["r"], 1, 3.0)
        ledger.record(msg(9), 3.0)
        ledger.ack(key, 3.0)  # prepared, not committed: refused
    assert ledger.pending() == before and ledger.get(msg(9).key) is None
    with ledger.batch():  # the ledger goes on after a batch that failed
        assert ledger.prepare(key, ["r"], 1, 4.0).state is S.PREPARED


def test_a_closed_ledger_refuses_calls(ledger: MessageProcessingLedger) -> None:
    ledger.close()
    with pytest.raises(LedgerError):
        ledger.record(msg(1), 1.0)
    with pytest.raises(LedgerError):
        ledger.pending()


# --- SQLite only --------------------------------------------------------------------


def test_sqlite_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    first = SqliteLedger(path)
    keys = [first.record(msg(n), 1.0)[0].key for n in range(3)]
    finish(first, keys[0], 2.0, ("a", "b"))
    first.begin(keys[1], 3.0)
    first.queue_put("id-1", "1/0", "hello", 4.0)
    before = [first.get(k) for k in keys]
    first.close()
    second = SqliteLedger(path)
    try:
        assert [second.get(k) for k in keys] == before
        assert [q.item_id for q in second.queue_items()] == ["id-1"]
        assert not second.record(msg(1), 9.0)[1]
    finally:
        second.close()


def _stored_doc(path: Path, key: str, change: Callable[[dict[str, object]], object]) -> None:
    """Rewrite the stored document of ``key`` (the ledger is closed)."""
    db = sqlite3.connect(path)
    try:
        doc = json.loads(db.execute("SELECT doc FROM entries WHERE key = ?", (key,)).fetchone()[0])
        change(doc)
        db.execute("UPDATE entries SET doc = ? WHERE key = ?", (json.dumps(doc), key))
        db.commit()
    finally:
        db.close()


def test_sqlite_reads_entries_stored_before_kinds_as_text(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    first = SqliteLedger(path)
    key = first.record(msg(7), 1.0)[0].key
    first.begin(key, 2.0)
    first.close()
    _stored_doc(path, key, lambda doc: doc.pop("kind"))  # as the version before kinds
    second = SqliteLedger(path)
    try:
        entry = second.get(key)
        assert entry is not None and (entry.kind, entry.state, entry.text) == (
            "text",
            S.PROCESSING,
            "m7",
        )
        assert second.prepare(key, ["r"], 1, 3.0).kind == "text"
    finally:
        second.close()
    stored: list[dict[str, object]] = []
    _stored_doc(path, key, stored.append)
    assert stored[0]["kind"] == "text"  # written again with its kind


def test_sqlite_refuses_a_stored_entry_of_an_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    first = SqliteLedger(path)
    photo = InboundMessage("memory", 7, 1, 0, 7, "", "ann", "photo")
    key = first.record(photo, 1.0)[0].key
    first.close()
    _stored_doc(path, key, lambda doc: doc.update(kind="hologram"))
    second = SqliteLedger(path)
    try:
        with pytest.raises(LedgerCorrupt, match="kind"):
            second.get(key)
    finally:
        second.close()


# --- kill -9 ------------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from baton.core.inbound import InboundMessage
from baton.stores.ledger_sqlite import SqliteLedger

ledger = SqliteLedger(Path(sys.argv[1]))
n = 0
while True:
    key = ledger.record(InboundMessage("memory", n, 1, 0, n, "m", "ann"), n)[0].key
    print("received", key, flush=True)
    ledger.begin(key, n)
    print("processing", key, flush=True)
    ledger.prepare(key, ["r%d" % n], 1, n)
    print("reply-prepared", key, flush=True)
    ledger.commit(key, 0, n, 1, n)
    print("reply-committed", key, flush=True)
    ledger.ack(key, n)
    print("acked", key, flush=True)
    ledger.queue_put("q%d" % n, "1/0", "t", n)
    print("queued", "q%d" % n, flush=True)
    n += 1
"""


def read_lines(proc: subprocess.Popen[bytes], count: int, deadline: float) -> list[str]:
    """Complete lines from ``proc``'s stdout until ``count`` are in (or the deadline)."""
    assert proc.stdout is not None
    fd, buf = proc.stdout.fileno(), b""
    lines: list[str] = []
    while len(lines) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"the writer printed only {len(lines)} lines in time"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"the writer exited early ({proc.poll()})"
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines.extend(line.decode() for line in done)
    return lines


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kill_after", [1, 9, 40, 150])
def test_every_step_reported_survives_kill_9(tmp_path: Path, kill_after: int) -> None:
    path = tmp_path / "l.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        lines = read_lines(proc, kill_after, time.monotonic() + 20)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert proc.stdout is not None
        rest = proc.stdout.read().decode()  # printed before the kill, not read yet
        lines += rest.split("\n")[:-1]  # the last piece is an unfinished line (or "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    ledger = SqliteLedger(path)  # opens cleanly: quick_check and schema pass
    try:
        queued = {q.item_id for q in ledger.queue_items()}
        for line in lines:
            what, key = line.split()
            if what == "queued":
                assert key in queued, line
                continue
            entry = ledger.get(key)
            assert entry is not None and entry.state.rank >= S(what).rank, line
        ledger.record(msg(10**6), 1.0)  # and takes new writes
    finally:
        ledger.close()


DIE_WHILE_CREATING = """
import os, signal, sqlite3, sys
from pathlib import Path
import baton.stores.ledger_sqlite as adapter
import baton.stores.sqlite_file as opener

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "before-link":
    opener.os.link = die
else:  # in the middle of writing the schema
    connect = sqlite3.connect
    def dying_connect(*args, **kwargs):
        db = connect(*args, **kwargs)
        def authorize(action, *_):
            if action == sqlite3.SQLITE_CREATE_INDEX:
                die()
            return sqlite3.SQLITE_OK
        db.set_authorizer(authorize)
        return db
    opener.sqlite3.connect = dying_connect
adapter.SqliteLedger(Path(sys.argv[1]))
print("created")
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["mid-schema", "before-link"])
def test_a_kill_9_while_creating_leaves_no_ledger(tmp_path: Path, where: str) -> None:
    path = tmp_path / "l.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", DIE_WHILE_CREATING, str(path), where],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    assert not path.exists() and out == b""
    ledger = SqliteLedger(path)  # a fresh ledger, not a corrupt one
    try:
        assert ledger.record(msg(1), 1.0)[1]
    finally:
        ledger.close()
