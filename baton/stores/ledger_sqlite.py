"""SqliteLedger: the MessageProcessingLedger port on one SQLite file
(``data/ledger.sqlite``), opened by baton.stores.sqlite_file.SqliteFile.

Invariants:
- Those of SqliteFile: every method is one ``BEGIN IMMEDIATE`` transaction in WAL mode
  with ``synchronous=FULL``, so when it returns its change survives kill -9 and power
  loss, and when it raises nothing changed; the file is private (0600) and created
  whole (a kill -9 during creation leaves no file, so an empty file is not baton's); a
  file that is not a ledger of our schema is refused and left untouched.
- The rules are the pure functions of baton.core.ledger and baton.core.ledger_marker;
  this module only stores entries (one JSON document each, plus the columns the
  queries need).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec

from baton.core import ledger as rules
from baton.core import safejson
from baton.core.errors import LedgerCorrupt, LedgerError, UnknownEntry
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, LedgerState, QueuedMessage, ReplyMarker, apply_marker
from baton.stores.ledger_steps import LedgerSteps
from baton.stores.sqlite_file import Kind, SqliteFile

P = ParamSpec("P")

SCHEMA_VERSION = "1"
TABLES = {"meta", "entries", "queue"}
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    topic TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    update_id INTEGER,
    updated_ms REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX entries_by_topic ON entries (topic, message_id);
CREATE INDEX entries_by_state ON entries (state, updated_ms);
CREATE TABLE queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    text TEXT NOT NULL,
    queued_ms REAL NOT NULL
);
"""
KIND = Kind("ledger", SCHEMA, frozenset(TABLES), SCHEMA_VERSION, LedgerError, LedgerCorrupt)
_ACKED = LedgerState.ACKED.value


class SqliteLedger(LedgerSteps):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = SqliteFile(self.path, KIND)
        self._tx = self._file.tx
        self.batch = self._file.batch

    @staticmethod
    def _load(db: sqlite3.Connection, key: str) -> LedgerEntry | None:
        row = db.execute("SELECT doc FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else _entry(row[0])

    @staticmethod
    def _store(db: sqlite3.Connection, e: LedgerEntry) -> None:
        db.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
            (e.key, e.state.value, e.topic, e.message_id, e.update_id, e.updated_ms, _doc(e)),
        )

    def _advance(
        self,
        key: str,
        step: Callable[Concatenate[LedgerEntry, P], LedgerEntry],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> LedgerEntry:
        with self._tx() as db:
            entry = self._load(db, key)
            if entry is None:
                raise UnknownEntry(f"no ledger entry {key!r}")
            after = step(entry, *args, **kwargs)
            if after != entry:
                self._store(db, after)
            return after

    # --- the port -----------------------------------------------------------------

    def record(self, msg: InboundMessage, now_ms: float) -> tuple[LedgerEntry, bool]:
        with self._tx() as db:
            found = self._load(db, msg.key)
            if found is not None:
                return found, False
            entry = LedgerEntry.of(msg, now_ms)
            self._store(db, entry)
            return entry, True

    def get(self, key: str) -> LedgerEntry | None:
        with self._tx() as db:
            return self._load(db, key)

    def apply_marker(self, marker: ReplyMarker, now_ms: float) -> LedgerEntry:
        with self._tx() as db:
            entry = self._load(db, marker.key)
            after = apply_marker(entry, marker, now_ms)
            if after != entry:
                self._store(db, after)
            return after

    def pending(self) -> list[LedgerEntry]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT doc FROM entries WHERE state != ? "
                "ORDER BY update_id IS NULL, update_id, message_id, key",
                (_ACKED,),
            ).fetchall()
        return [_entry(doc) for (doc,) in rows]

    def prune(self, now_ms: float, max_age_ms: float, max_entries: int) -> int:
        with self._tx() as db:
            aged = db.execute(
                "DELETE FROM entries WHERE state = ? AND updated_ms < ?",
                (_ACKED, now_ms - max_age_ms),
            ).rowcount
            (total,) = db.execute("SELECT count(*) FROM entries").fetchone()
            excess = total - max(0, max_entries)
            if excess <= 0:
                return aged
            over = db.execute(
                "DELETE FROM entries WHERE key IN (SELECT key FROM entries WHERE state = ? "
                "ORDER BY updated_ms, key LIMIT ?)",
                (_ACKED, excess),
            ).rowcount
            return aged + over

    def counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in LedgerState}
        with self._tx() as db:
            rows = db.execute("SELECT state, count(*) FROM entries GROUP BY state").fetchall()
        for state, n in rows:
            if state not in counts:
                raise LedgerCorrupt(f"{self.path}: unknown state {state!r}")
            counts[state] = n
        return counts

    def queue_put(self, item_id: str, topic: str, text: str, now_ms: float) -> bool:
        rules.check_text(item_id=item_id, topic=topic, text=text)
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO queue (item_id, topic, text, queued_ms) VALUES (?, ?, ?, ?)",
                (item_id, topic, text, now_ms),
            )
            return cur.rowcount == 1

    def queue_items(self) -> list[QueuedMessage]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT item_id, topic, text, queued_ms FROM queue ORDER BY queued_ms, seq"
            ).fetchall()
        return [QueuedMessage(*row) for row in rows]

    def queue_remove(self, item_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM queue WHERE item_id = ?", (item_id,))

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"SqliteLedger({str(self.path)!r})"


def _doc(entry: LedgerEntry) -> str:
    return json.dumps(entry.to_json(), separators=(",", ":"))


def _entry(doc: str) -> LedgerEntry:
    try:
        return LedgerEntry.from_json(safejson.loads(doc))
    except (ValueError, TypeError) as exc:
        raise LedgerCorrupt(f"a stored entry is not JSON: {exc}") from exc
