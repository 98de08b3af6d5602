"""SqliteFile: one private, durable SQLite file of baton's own schema (the ledger, the
transcripts), opened the one careful way.

Invariants:
- Durable: WAL mode with ``synchronous=FULL``; ``tx()`` is one ``BEGIN IMMEDIATE``
  transaction under one lock, so when it ends its change survives kill -9 and power
  loss, and when it raises nothing changed; ``batch()`` makes the ``tx()`` calls in it
  one such transaction (group commit). SQLite errors become the kind's error
  (its corrupt error for SQLITE_CORRUPT / SQLITE_NOTADB).
- Private: the file is created 0600 (SQLite gives its -wal and -shm the file's mode); a
  wider mode found on open is narrowed.
- Created whole: the schema is written to a private temporary file that is then linked
  into place (never over an existing file), so a kill -9 during creation leaves no file
  at the path, never a half-made one. Hence an empty (0-byte) file at the path is not
  baton's and is refused like any file that is not SQLite, fails ``PRAGMA quick_check``,
  lacks the kind's tables or carries another schema version in ``meta``. A refused file
  is left untouched (checked over a read-only connection): never repaired, overwritten
  or deleted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from baton.core.errors import BatonError
from baton.stores.files import fsync_dir

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


@dataclass(frozen=True)
class Kind:
    """What a file holds: its name for people, schema, and errors."""

    what: str  # "ledger", "transcript store"
    schema: str  # CREATE statements, a ``meta`` table among them
    tables: frozenset[str]
    version: str
    error: type[BatonError]
    corrupt: type[BatonError]


class SqliteFile:
    def __init__(self, path: Path, kind: Kind) -> None:
        self.path = Path(path)
        self.kind = kind
        if not self.path.parent.is_dir():
            raise kind.error(f"{self.path.parent} does not exist; cannot open the {kind.what}")
        self._lock = threading.Lock()
        self._batch: int | None = None  # the thread whose batch() is open
        if not os.path.lexists(self.path):
            self._create()
        self._validate()
        self._db: sqlite3.Connection | None = self._connect()

    def _refuse(self, why: str) -> BatonError:
        return self.kind.corrupt(
            f"{self.path}: {why}; the file was left untouched (move it aside to start a "
            f"new {self.kind.what}, or restore it from a backup)"
        )

    def _create(self) -> None:
        k = self.kind
        try:
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".new"
            )
            os.close(fd)  # mkstemp made it 0600; SQLite takes an empty file for a new database
        except OSError as exc:
            raise k.error(f"{self.path}: could not create the {k.what}: {exc}") from exc
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(
                    f"BEGIN IMMEDIATE; {k.schema}"
                    f"INSERT INTO meta VALUES ('schema_version', '{k.version}'); COMMIT;"
                )
            finally:
                db.close()  # checkpoints the WAL into the file and removes it
            with contextlib.suppress(FileExistsError):  # someone else made one: use theirs
                os.link(tmp, self.path)  # unlike rename, never replaces a file
            fsync_dir(self.path.parent)
        except (sqlite3.Error, OSError) as exc:
            raise k.error(f"{self.path}: could not create the {k.what}: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _validate(self) -> None:
        """Refuse anything but a file of our schema, reading it without writing it."""
        if not self.path.is_file():
            raise self._refuse("not a regular file")
        try:
            with open(self.path, "rb") as fh:
                header = fh.read(len(_HEADER))
        except OSError as exc:
            raise self.kind.error(f"{self.path}: cannot read the {self.kind.what}: {exc}") from exc
        if not header:
            raise self._refuse("empty file (baton never leaves one)")
        if header != _HEADER:
            raise self._refuse("not an SQLite database")
        side = [Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm")]
        existed = {p for p in side if p.exists()}
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                problem = self._schema_problem(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            if _named(exc, _CIRCUMSTANCE):  # the file may be fine; we could not read it now
                detail = f"{self.path}: cannot read the {self.kind.what}: {exc}"
                raise self.kind.error(detail) from exc
            problem = f"unreadable ({exc})"
        if problem:
            for p in side:  # files our read-only look created (never one that was there)
                if p not in existed:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            raise self._refuse(problem)

    def _schema_problem(self, db: sqlite3.Connection) -> str | None:
        k = self.kind
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            return f"PRAGMA quick_check failed: {'; '.join(str(r[0]) for r in check[:3])}"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables >= k.tables:
            return f"not a baton {k.what} (missing tables {sorted(k.tables - tables)})"
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != k.version:
            found = None if row is None else row[0]
            return f"unknown {k.what} schema version {found!r} (this baton reads {k.version})"
        return None

    def _connect(self) -> sqlite3.Connection:
        k = self.kind
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise k.error(f"{self.path}: could not open the {k.what}: {exc}") from exc
        try:
            db.execute("PRAGMA busy_timeout=5000")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            if mode != "wal":
                raise k.error(f"{self.path}: SQLite refused WAL mode ({mode})")
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                with contextlib.suppress(FileNotFoundError):
                    if p.stat().st_mode & 0o077:
                        p.chmod(0o600)
        except (sqlite3.Error, OSError, BatonError) as exc:
            db.close()
            if isinstance(exc, BatonError):
                raise
            raise k.error(f"{self.path}: could not open the {k.what}: {exc}") from exc
        return db

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction under the lock; committed when the block ends,
        rolled back when it raises. Inside this thread's ``batch()``, it joins that one."""
        if self._batch == threading.get_ident():
            assert self._db is not None  # the batch holds the lock and an open transaction
            yield self._db
            return
        with self._lock:
            db = self._db
            if db is None:
                raise self.kind.error(f"{self.path}: the {self.kind.what} is closed")
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
                if _named(exc, _CORRUPT):
                    raise self.kind.corrupt(f"{self.path}: {exc}") from exc
                raise self.kind.error(f"{self.path}: {exc}") from exc

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Every ``tx()`` this thread opens in the block is one transaction: all of them
        durable when the block ends (one commit, one fsync), none when it raises."""
        with self.tx():
            self._batch = threading.get_ident()
            try:
                yield
            finally:
                self._batch = None

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as exc:
                detail = f"{self.path}: could not close the {self.kind.what}: {exc}"
                raise self.kind.error(detail) from exc


def _named(exc: sqlite3.Error, names: tuple[str, ...]) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(names)
