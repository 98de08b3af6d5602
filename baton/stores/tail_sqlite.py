"""SqliteLiveTailBuffer: the LiveTailBuffer port on one SQLite file (``data/tail/buffer.sqlite``),
opened by baton.stores.sqlite_file.SqliteFile.

Invariants:
- Those of SqliteFile: every method is one durable ``BEGIN IMMEDIATE`` transaction; the
  file is private (0600) and created whole; a file that is not a tail buffer of our
  schema is refused and left untouched.
- Turns stay sealed at rest: ``box`` is stored as received (sealed to this machine's
  X25519 key); only the chain links (topic, seq, ledger keys) are in the clear.
- The rules are those of baton.core.live_tail.decide_frame: a topic's rows are seqs
  m..n, one after another (m is 1 until ``prune``). A row that does not make a valid
  frame raises TailCorrupt.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from baton.core.errors import TailCorrupt, TailError, TailRefused
from baton.core.live_tail import FrameResult, TailFrame, decide_frame
from baton.stores.sqlite_file import Kind, SqliteFile

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE frames (
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    prev TEXT NOT NULL,
    box BLOB NOT NULL,
    PRIMARY KEY (topic, seq)
);
CREATE TABLE dirty (topic TEXT PRIMARY KEY, from_seq INTEGER NOT NULL);
"""
KIND = Kind(
    "live-tail buffer", SCHEMA, frozenset({"meta", "frames", "dirty"}), "1", TailError, TailCorrupt
)


class SqliteLiveTailBuffer:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = SqliteFile(self.path, KIND)
        self._tx = self._file.tx

    def _frame(self, row: tuple[str, int, str, str, bytes]) -> TailFrame:
        topic, seq, key, prev, box = row
        try:
            return TailFrame(topic, seq, key, prev, bytes(box))
        except (TailRefused, TypeError) as exc:
            raise TailCorrupt(f"{self.path}: frame {seq} of {topic!r}: {exc}") from exc

    @staticmethod
    def _held(db: sqlite3.Connection, topic: str, seq: int) -> tuple[str, str] | None:
        row = db.execute("SELECT key, prev FROM frames WHERE topic = ? AND seq = ?", (topic, seq))
        found = row.fetchone()
        return None if found is None else (str(found[0]), str(found[1]))

    def take(self, frame: TailFrame, head: int | None) -> FrameResult:
        topic, seq = frame.topic, frame.seq
        with self._tx() as db:
            below = self._held(db, topic, seq - 1) if seq > 1 else None
            prev = None if below is None else below[0]
            result = decide_frame(prev, self._held(db, topic, seq), frame)
            if result in (FrameResult.ADDED, FrameResult.REPLACED):
                db.execute("DELETE FROM frames WHERE topic = ? AND seq >= ?", (topic, seq))
                db.execute(
                    "INSERT INTO frames VALUES (?, ?, ?, ?, ?)",
                    (topic, seq, frame.key, frame.prev, frame.box),
                )
                db.execute(
                    "INSERT INTO dirty VALUES (?, ?) ON CONFLICT (topic) "
                    "DO UPDATE SET from_seq = min(from_seq, excluded.from_seq)",
                    (topic, seq),
                )
            if result is not FrameResult.REFUSED and head == seq:
                db.execute("DELETE FROM frames WHERE topic = ? AND seq > ?", (topic, seq))
            return result

    def prune(self, topic: str, before_seq: int) -> int:
        with self._tx() as db:
            found = db.execute("SELECT max(seq) FROM frames WHERE topic = ?", (topic,)).fetchone()
            last = 0 if found[0] is None else int(found[0])
            gone = db.execute(
                "DELETE FROM frames WHERE topic = ? AND seq < ?", (topic, min(before_seq, last))
            )
            return gone.rowcount

    def heads(self) -> dict[str, tuple[int, str]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT f.topic, f.seq, f.key FROM frames f JOIN "
                "(SELECT topic, max(seq) AS seq FROM frames GROUP BY topic) h "
                "ON f.topic = h.topic AND f.seq = h.seq"
            ).fetchall()
        return {topic: (int(seq), str(key)) for topic, seq, key in rows}

    def frames(self, topic: str, after_seq: int, limit: int) -> list[TailFrame]:
        if limit <= 0:
            return []
        with self._tx() as db:
            rows = db.execute(
                "SELECT topic, seq, key, prev, box FROM frames WHERE topic = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (topic, after_seq, limit),
            ).fetchall()
        return [self._frame(row) for row in rows]

    def dirty(self) -> dict[str, int]:
        with self._tx() as db:
            rows = db.execute("SELECT topic, from_seq FROM dirty").fetchall()
        return {topic: int(seq) for topic, seq in rows}

    def clean(self, topic: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM dirty WHERE topic = ?", (topic,))

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"SqliteLiveTailBuffer({str(self.path)!r})"
