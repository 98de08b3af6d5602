"""One contract for every SQLite file of baton's own schema, opened by
baton.stores.sqlite_file.SqliteFile: the ledger, the transcripts and the live-tail
buffer. Their files are private (whatever the umask), a wider mode found is narrowed,
the directory must exist, and a file that is not of the kind (random bytes, an empty
file, a directory, a truncated or garbled file, a wrong or missing schema version, one
only in the -wal, another program's database, another kind's file) is refused every
time with the kind's corrupt error and left untouched."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from baton.core.errors import (
    BatonError,
    LedgerCorrupt,
    LedgerError,
    TailCorrupt,
    TailError,
    TranscriptCorrupt,
    TranscriptError,
)
from baton.core.inbound import InboundMessage
from baton.core.live_tail import TailFrame
from baton.stores.ledger_sqlite import SqliteLedger
from baton.stores.tail_sqlite import SqliteLiveTailBuffer
from baton.stores.transcript_sqlite import SqliteTranscriptStore

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Kind:
    name: str
    open: Callable[[Path], Any]
    fill: Callable[[Any, int], None]  # write row n (about 300 bytes)
    error: type[BatonError]
    corrupt: type[BatonError]


def _record(ledger: SqliteLedger, n: int) -> None:
    ledger.record(InboundMessage("memory", n, 1, 0, n, "x" * 300, "ann"), 1.0)


def _append(store: SqliteTranscriptStore, n: int) -> None:
    store.append("1/0", f"memory:1/0:{n}", n, "x" * 300, replies=(), at_ms=1.0)


def _take(buffer: SqliteLiveTailBuffer, n: int) -> None:
    prev = "" if n == 0 else f"k{n}"
    buffer.take(TailFrame("1/0", n + 1, f"k{n + 1}", prev, b"x" * 300), None)


KINDS = {
    "ledger": Kind("ledger", SqliteLedger, _record, LedgerError, LedgerCorrupt),
    "transcripts": Kind(
        "transcripts", SqliteTranscriptStore, _append, TranscriptError, TranscriptCorrupt
    ),
    "tail buffer": Kind("tail buffer", SqliteLiveTailBuffer, _take, TailError, TailCorrupt),
}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> Kind:
    return KINDS[request.param]


def real_file(kind: Kind, path: Path, rows: int = 200) -> None:
    store = kind.open(path)
    try:
        for n in range(rows):
            kind.fill(store, n)
    finally:
        store.close()


def sql(path: Path, statement: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(statement)
        db.commit()


def test_its_files_are_private(kind: Kind, tmp_path: Path) -> None:
    old = os.umask(0)  # the widest umask: the file must not depend on it
    try:
        store = kind.open(tmp_path / "f.sqlite")
    finally:
        os.umask(old)
    try:
        kind.fill(store, 0)
        names = ("f.sqlite", "f.sqlite-shm", "f.sqlite-wal")
        assert sorted(p.name for p in tmp_path.iterdir()) == list(names)
        for name in names:
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        store.close()


def test_a_wider_mode_found_is_narrowed(kind: Kind, tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    kind.open(path).close()
    path.chmod(0o644)
    kind.open(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_it_needs_its_directory(kind: Kind, tmp_path: Path) -> None:
    with pytest.raises(kind.error, match="does not exist") as caught:
        kind.open(tmp_path / "missing" / "f.sqlite")
    assert not isinstance(caught.value, kind.corrupt)
    assert not (tmp_path / "missing").exists()


# --- what is not ours ----------------------------------------------------------------


def truncated(kind: Kind, path: Path) -> None:
    real_file(kind, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbled(kind: Kind, path: Path) -> None:
    real_file(kind, path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
    data = bytearray(path.read_bytes())
    data[2 * 4096 : 3 * 4096] = b"\xff" * 4096  # page 3: PRAGMA quick_check fails
    path.write_bytes(bytes(data))


def wrong_version(kind: Kind, path: Path) -> None:
    real_file(kind, path, 3)
    sql(path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")


def no_version(kind: Kind, path: Path) -> None:
    real_file(kind, path, 3)
    sql(path, "DELETE FROM meta")


def wrong_version_in_the_wal(kind: Kind, path: Path) -> None:
    """As a kill -9 leaves it: the change only in the -wal (a read-write open would
    checkpoint it into the file: the file must stay as it is)."""
    origin = path.with_name("origin.sqlite")
    real_file(kind, origin, 3)
    with contextlib.closing(sqlite3.connect(origin)) as db:
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        db.commit()
        for suffix in ("", "-wal"):
            Path(f"{path}{suffix}").write_bytes(Path(f"{origin}{suffix}").read_bytes())
    assert Path(f"{path}-wal").stat().st_size > 0


def another_kinds_file(kind: Kind, path: Path) -> None:
    other = next(k for k in KINDS.values() if k is not kind)
    other.open(path).close()


NOT_OURS: dict[str, Callable[[Kind, Path], object]] = {
    "random bytes": lambda _, p: p.write_bytes(os.urandom(8192)),
    "an empty file": lambda _, p: p.write_bytes(b""),
    "a directory": lambda _, p: p.mkdir(),
    "a truncated file": truncated,
    "a garbled page": garbled,
    "a wrong schema version": wrong_version,
    "no schema version": no_version,
    "a wrong schema version in the wal": wrong_version_in_the_wal,
    "another program's database": lambda _, p: sql(p, "CREATE TABLE notes (body TEXT)"),
    "another kind's file": another_kinds_file,
}


def snapshot(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in directory.iterdir()
    }


@pytest.mark.parametrize("make", NOT_OURS.values(), ids=list(NOT_OURS))
def test_a_file_that_is_not_ours_is_refused_and_left_untouched(
    kind: Kind, tmp_path: Path, make: Callable[[Kind, Path], object]
) -> None:
    path = tmp_path / "f.sqlite"
    make(kind, path)
    before = snapshot(tmp_path)
    for _ in range(2):  # refused every time, not repaired the first
        with pytest.raises(kind.corrupt) as caught:
            kind.open(path)
        assert str(path) in caught.value.detail and "untouched" in caught.value.detail
        assert caught.value.code == kind.corrupt.code
    assert snapshot(tmp_path) == before
