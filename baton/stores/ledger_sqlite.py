"""SqliteLedger: the Ledger port on one SQLite file (``data/ledger.sqlite``).

Invariants:
- Durable: WAL mode with ``synchronous=FULL``; every method is one ``BEGIN IMMEDIATE``
  transaction, so when it returns its change survives kill -9 and power loss, and when
  it raises nothing changed.
- Private: the file is created 0600 (SQLite gives its -wal and -shm the file's mode); a
  wider mode found on open is narrowed.
- Created whole: the schema is written to a private temporary file that is then linked
  into place (never over an existing file), so a kill -9 during creation leaves no file
  at the path, never a half-made one. Hence an empty (0-byte) file at the path is not
  something baton made, and it is refused like any other corrupt file; so are files
  that are not SQLite, fail ``PRAGMA quick_check``, lack our tables or carry an unknown
  schema version. A refused file is left untouched (checked over a read-only
  connection): never repaired, overwritten or deleted.
- One connection, shared by threads under one lock. The rules are the pure functions of
  baton.core.ledger and baton.core.ledger_marker; this module only stores entries (one
  JSON document each, plus the columns the queries need).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Concatenate, ParamSpec

from baton.core import ledger as rules
from baton.core.errors import LedgerCorrupt, LedgerError, UnknownEntry
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, LedgerState, QueuedMessage, ReplyMarker, apply_marker
from baton.stores.files import fsync_dir

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
_HEADER = b"SQLite format 3\x00"
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
#: Errors that say nothing about the file's contents (permissions, I/O, locks, space).
_CIRCUMSTANCE = (
    "SQLITE_CANTOPEN",
    "SQLITE_PERM",
    "SQLITE_IOERR",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_NOMEM",
    "SQLITE_FULL",
)
_ACKED = LedgerState.ACKED.value
_DELIVERED = tuple(s.value for s in rules.DELIVERED)


class SqliteLedger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise LedgerError(f"{self.path.parent} does not exist; cannot open the ledger")
        self._lock = threading.Lock()
        if not os.path.lexists(self.path):
            self._create()
        self._validate()
        self._db: sqlite3.Connection | None = self._connect()

    # --- opening ------------------------------------------------------------------

    def _refuse(self, why: str) -> LedgerCorrupt:
        return LedgerCorrupt(
            f"{self.path}: {why}; the file was left untouched (move it aside to start "
            f"a new ledger, or restore it from a backup)"
        )

    def _create(self) -> None:
        try:
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".new"
            )
            os.close(fd)  # mkstemp made it 0600; SQLite takes an empty file for a new database
        except OSError as exc:
            raise LedgerError(f"{self.path}: could not create the ledger: {exc}") from exc
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(
                    f"BEGIN IMMEDIATE; {SCHEMA}"
                    f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
                )
            finally:
                db.close()  # checkpoints the WAL into the file and removes it
            with contextlib.suppress(FileExistsError):  # someone else made one: use theirs
                os.link(tmp, self.path)  # unlike rename, never replaces a file
            fsync_dir(self.path.parent)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"{self.path}: could not create the ledger: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _validate(self) -> None:
        """Refuse anything but a ledger of our schema, reading it without writing it."""
        if not self.path.is_file():
            raise self._refuse("not a regular file")
        try:
            with open(self.path, "rb") as fh:
                header = fh.read(len(_HEADER))
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger: {exc}") from exc
        if not header:
            raise self._refuse("empty file (baton never leaves one)")
        if header != _HEADER:
            raise self._refuse("not an SQLite database")
        side = [Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm")]
        existed = {p for p in side if p.exists()}
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                problem = _schema_problem(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            if _circumstance(exc):  # the file may be fine; we could not read it now
                raise LedgerError(f"{self.path}: cannot read the ledger: {exc}") from exc
            problem = f"unreadable ({exc})"
        if problem:
            for p in side:  # files our read-only look created (never one that was there)
                if p not in existed:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            raise self._refuse(problem)

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: could not open the ledger: {exc}") from exc
        try:
            db.execute("PRAGMA busy_timeout=5000")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            if mode != "wal":
                raise LedgerError(f"{self.path}: SQLite refused WAL mode ({mode})")
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                with contextlib.suppress(FileNotFoundError):
                    if p.stat().st_mode & 0o077:
                        p.chmod(0o600)
        except (sqlite3.Error, OSError, LedgerError) as exc:
            db.close()
            if isinstance(exc, LedgerError):
                raise
            raise LedgerError(f"{self.path}: could not open the ledger: {exc}") from exc
        return db

    # --- transactions -------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction under the lock; committed when the block ends,
        rolled back when it raises. SQLite errors become LedgerError (LedgerCorrupt)."""
        with self._lock:
            db = self._db
            if db is None:
                raise LedgerError(f"{self.path}: the ledger is closed")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                if str(getattr(exc, "sqlite_errorname", "")).startswith(_CORRUPT):
                    raise LedgerCorrupt(f"{self.path}: {exc}") from exc
                raise LedgerError(f"{self.path}: {exc}") from exc

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

    def begin(self, key: str, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.begin, now_ms)

    def fail(self, key: str, error: str, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.fail, error, now_ms)

    def prepare(self, key: str, replies: Sequence[str], epoch: int, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.prepare, replies, epoch, now_ms)

    def commit(
        self, key: str, index: int, message_id: int | None, epoch: int, now_ms: float
    ) -> LedgerEntry:
        return self._advance(key, rules.commit, index, message_id, epoch, now_ms)

    def ack(self, key: str, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.ack, now_ms)

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

    def history(self, topic: str, before_message_id: int, limit: int) -> list[LedgerEntry]:
        if limit <= 0:
            return []
        with self._tx() as db:
            rows = db.execute(
                "SELECT doc FROM entries WHERE topic = ? AND message_id < ? AND state IN (?, ?) "
                "ORDER BY message_id DESC, key DESC LIMIT ?",
                (topic, before_message_id, *_DELIVERED, limit),
            ).fetchall()
        return [_entry(doc) for (doc,) in reversed(rows)]

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
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as exc:
                raise LedgerError(f"{self.path}: could not close the ledger: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteLedger({str(self.path)!r})"


def _schema_problem(db: sqlite3.Connection) -> str | None:
    """Why ``db`` is not a ledger of our schema, or None when it is one."""
    check = db.execute("PRAGMA quick_check").fetchall()
    if check != [("ok",)]:
        return f"PRAGMA quick_check failed: {'; '.join(str(r[0]) for r in check[:3])}"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables >= TABLES:
        return f"not a baton ledger (missing tables {sorted(TABLES - tables)})"
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        found = None if row is None else row[0]
        return f"unknown ledger schema version {found!r} (this baton reads {SCHEMA_VERSION})"
    return None


def _circumstance(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(_CIRCUMSTANCE)


def _doc(entry: LedgerEntry) -> str:
    return json.dumps(entry.to_json(), separators=(",", ":"))


def _entry(doc: str) -> LedgerEntry:
    try:
        return LedgerEntry.from_json(json.loads(doc))
    except (ValueError, TypeError) as exc:
        raise LedgerCorrupt(f"a stored entry is not JSON: {exc}") from exc
