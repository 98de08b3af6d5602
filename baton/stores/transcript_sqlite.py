"""SqliteTranscriptStore: the TranscriptStore port on one SQLite file
(``data/transcripts.sqlite``), opened by baton.stores.sqlite_file.SqliteFile.

Invariants:
- Those of SqliteFile: every method is one durable ``BEGIN IMMEDIATE`` transaction; the
  file is private (0600) and created whole; a file that is not a transcript store of
  our schema is refused and left untouched. A stored turn that does not decode raises
  TranscriptCorrupt.
- The rules are those of baton.core.transcript; the table keeps (topic, seq) and
  (topic, ledger_key) unique and one JSON document per turn.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from baton.core import safejson
from baton.core.errors import TranscriptCorrupt, TranscriptError, TranscriptRefused
from baton.core.transcript import PutResult, TranscriptTurn, decide_put
from baton.stores.sqlite_file import Kind, SqliteFile

SCHEMA_VERSION = "1"
TABLES = {"meta", "turns"}
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE turns (
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ledger_key TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (topic, seq),
    UNIQUE (topic, ledger_key)
);
"""
KIND = Kind(
    "transcript store",
    SCHEMA,
    frozenset(TABLES),
    SCHEMA_VERSION,
    TranscriptError,
    TranscriptCorrupt,
)
_SELECT = "SELECT topic, seq, ledger_key, doc FROM turns"


class SqliteTranscriptStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = SqliteFile(self.path, KIND)
        self._tx = self._file.tx

    def _one(self, db: sqlite3.Connection, where: str, *args: object) -> TranscriptTurn | None:
        row = db.execute(f"{_SELECT} WHERE {where}", args).fetchone()
        return None if row is None else self._turn(row)

    def _turn(self, row: tuple[str, int, str, str]) -> TranscriptTurn:
        topic, seq, key, doc = row
        try:
            turn = TranscriptTurn.from_json(safejson.loads(doc))
        except (ValueError, TypeError, TranscriptRefused) as exc:
            raise TranscriptCorrupt(f"{self.path}: turn {seq} of {topic!r}: {exc}") from exc
        if (turn.topic, turn.seq, turn.ledger_key) != (topic, seq, key):
            raise TranscriptCorrupt(f"{self.path}: turn {seq} of {topic!r} is filed wrongly")
        return turn

    def _last(self, db: sqlite3.Connection, topic: str) -> TranscriptTurn | None:
        return self._one(db, "topic = ? ORDER BY seq DESC LIMIT 1", topic)

    @staticmethod
    def _insert(db: sqlite3.Connection, turn: TranscriptTurn) -> None:
        doc = json.dumps(turn.to_json(), separators=(",", ":"))
        db.execute(
            "INSERT INTO turns VALUES (?, ?, ?, ?)", (turn.topic, turn.seq, turn.ledger_key, doc)
        )

    # --- the port -----------------------------------------------------------------

    def append(
        self,
        topic: str,
        ledger_key: str,
        message_id: int,
        text: str,
        *,
        replies: tuple[str, ...],
        at_ms: float,
    ) -> TranscriptTurn:
        # built (and so checked) before SQLite sees any argument; seq is set below
        first = TranscriptTurn(topic, 1, ledger_key, message_id, text, tuple(replies), at_ms)
        with self._tx() as db:
            keyed = self._one(db, "topic = ? AND ledger_key = ?", topic, ledger_key)
            if keyed is not None:
                return keyed
            last = self._last(db, topic)
            turn = first if last is None else replace(first, seq=last.seq + 1)
            self._insert(db, turn)
            return turn

    def put(self, turn: TranscriptTurn) -> PutResult:
        with self._tx() as db:
            last = self._last(db, turn.topic)
            held = self._one(db, "topic = ? AND seq = ?", turn.topic, turn.seq)
            keyed = self._one(db, "topic = ? AND ledger_key = ?", turn.topic, turn.ledger_key)
            result = decide_put(last, held, turn, keyed)
            if result is PutResult.ADDED:
                self._insert(db, turn)
            return result

    def turns(self, topic: str, after_seq: int, limit: int) -> list[TranscriptTurn]:
        if limit <= 0:
            return []
        with self._tx() as db:
            rows = db.execute(
                f"{_SELECT} WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (topic, after_seq, limit),
            ).fetchall()
            return [self._turn(row) for row in rows]

    def history(self, topic: str, limit: int) -> list[TranscriptTurn]:
        if limit <= 0:
            return []
        with self._tx() as db:
            rows = db.execute(
                f"{_SELECT} WHERE topic = ? ORDER BY seq DESC LIMIT ?", (topic, limit)
            ).fetchall()
            return [self._turn(row) for row in reversed(rows)]

    def truncate(self, topic: str, after_seq: int) -> int:
        with self._tx() as db:
            cursor = db.execute("DELETE FROM turns WHERE topic = ? AND seq > ?", (topic, after_seq))
            return int(cursor.rowcount)

    def last_seqs(self) -> dict[str, int]:
        with self._tx() as db:
            rows = db.execute("SELECT topic, max(seq) FROM turns GROUP BY topic").fetchall()
        return {topic: seq for topic, seq in rows}

    def last_seq(self, topic: str) -> int:
        with self._tx() as db:
            (seq,) = db.execute("SELECT max(seq) FROM turns WHERE topic = ?", (topic,)).fetchone()
        return 0 if seq is None else int(seq)

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"SqliteTranscriptStore({str(self.path)!r})"
