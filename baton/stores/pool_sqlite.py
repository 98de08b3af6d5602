"""SqlitePoolStore: the TopicPlacementPinStore port on one SQLite file
(``data/pool.sqlite``), opened by baton.stores.sqlite_file.SqliteFile.

Invariants:
- Those of SqliteFile: every method is one durable ``BEGIN IMMEDIATE`` transaction; the
  file is private (0600) and created whole; a file that is not a pool store of our
  schema is refused and left untouched.
- One row holds the state as its JSON (baton.core.pool_state.PoolState.to_json), with
  its term and version in the clear; ``keep`` replaces it only with a newer one, in the
  same transaction that read it. A row that does not decode raises PoolCorrupt.
"""

from __future__ import annotations

import json
from pathlib import Path

from baton.core.errors import PoolCorrupt, PoolError, PoolRefused
from baton.core.pool_state import PoolState, newer
from baton.core.safejson import loads
from baton.stores.sqlite_file import Kind, SqliteFile

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    term INTEGER NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
"""
KIND = Kind("pool store", SCHEMA, frozenset({"meta", "state"}), "1", PoolError, PoolCorrupt)


class SqlitePoolStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = SqliteFile(self.path, KIND)
        self._tx = self._file.tx

    def _read(self, row: tuple[int, int, str] | None) -> PoolState:
        if row is None:
            return PoolState()
        term, version, doc = row
        try:
            state = PoolState.from_json(loads(doc))
        except (ValueError, PoolRefused) as exc:
            raise PoolCorrupt(f"{self.path}: the pool's state does not decode: {exc}") from None
        if (state.term, state.version) != (term, version):
            raise PoolCorrupt(f"{self.path}: the pool's state and its row disagree")
        return state

    def load(self) -> PoolState:
        with self._tx() as db:
            row = db.execute("SELECT term, version, doc FROM state WHERE id = 1").fetchone()
        return self._read(row)

    def keep(self, state: PoolState) -> bool:
        doc = json.dumps(state.to_json(), separators=(",", ":"))
        with self._tx() as db:
            row = db.execute("SELECT term, version, doc FROM state WHERE id = 1").fetchone()
            if not newer(state, self._read(row)):
                return False
            db.execute(
                "INSERT INTO state VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "term = excluded.term, version = excluded.version, doc = excluded.doc",
                (state.term, state.version, doc),
            )
            return True

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"SqlitePoolStore({str(self.path)!r})"
