"""ChatStore: the state of the bundled chat service, in one SQLite file.

One chat (id 1, a supergroup) whose named topics get thread ids 1, 2, 3... at first use.
User messages create updates; getUpdates hands them out until an offset confirms them;
bot messages (sendMessage) are fenced by epoch and deduplicated by reply key.

Invariants:
- The file is created 0600 and runs in WAL mode with synchronous=FULL: an answer the
  service gave (a delivered reply, a confirmed offset, a raised epoch) survives kill -9
  and power loss, so a restart loses nothing.
- One lock guards the one connection. Every check-and-write is one ``BEGIN IMMEDIATE``
  transaction under it: a send's stale check, the epoch it raises, the repeat check and
  the delivery are one atomic step.
- message_id, update_id and thread_id come from AUTOINCREMENT columns: they only grow
  and are never reused, not even after confirmed updates are deleted.
- The highest epoch seen never decreases. A send with an epoch below it is refused
  (stale) and changes nothing but the send log. A reply key is delivered at most once.
- Long polls wait on a Condition over the same lock, with a deadline. A new poll ends a
  poll still waiting (it raises Superseded), as Telegram's getUpdates does.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.core.errors import BatonError, ConfigError

CHAT_ID = 1
CHAT = {"id": CHAT_ID, "type": "supergroup"}
USER = {"id": 1000, "is_bot": False, "username": "user"}
BOT = {"id": 1, "is_bot": True, "username": "baton_bot"}
SCHEMA_VERSION = 1
MAX_SEND_CHARS = 65536  # a bot message's text, in characters
TOPIC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
REPLY_KEY = re.compile(r"[0-9a-f]{64}")  # sha256 hex, see baton.core.ledger.reply_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    thread_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    date INTEGER NOT NULL,
    client_id TEXT,
    update_id INTEGER,
    reply_to INTEGER,
    epoch INTEGER,
    reply_key TEXT UNIQUE,
    UNIQUE (thread_id, client_id));
CREATE TABLE IF NOT EXISTS updates (
    update_id INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, reply_key TEXT,
    epoch INTEGER, outcome TEXT NOT NULL, chat_id INTEGER, thread_id INTEGER,
    reply_to INTEGER, message_id INTEGER, poller TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sends_by_key ON sends (reply_key);
CREATE TABLE IF NOT EXISTS polls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, poller TEXT NOT NULL,
    "offset" INTEGER, outcome TEXT NOT NULL, count INTEGER NOT NULL);
"""

_MSG_COLS = "message_id, thread_id, sender, text, date, reply_to, epoch, reply_key"
SEND_FIELDS: tuple[str, ...] = ("seq", "time", "reply_key", "epoch", "outcome", "chat_id")
SEND_FIELDS += ("thread_id", "reply_to", "message_id", "poller")
POLL_FIELDS = ("seq", "time", "poller", "offset", "outcome", "count")


class ChatRefused(BatonError):
    """The chat refuses the request (unknown chat or thread, bad parameters)."""

    code = "bad_request"


class Superseded(BatonError):
    """A later getUpdates ended this one while it was waiting."""

    code = "poll_conflict"


class ChatClosed(BatonError):
    """The chat store is closed."""

    code = "unavailable"


@dataclass(frozen=True)
class Posted:
    message_id: int
    topic: str
    thread_id: int
    update_id: int
    created: bool  # False: the client_id was seen before; nothing was posted


@dataclass(frozen=True)
class Sent:
    outcome: str  # "accepted" | "repeat" | "stale"
    message: dict[str, Any] | None  # the delivered (or original) message; None when stale
    highest_epoch: int


class ChatStore:
    """The chat service's state. Thread-safe; every method is one transaction."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0  # bumped by every poll: a waiting poll with an older one ends
        self._waiting = 0
        self._interrupted = False
        self._db: sqlite3.Connection | None = _open(self.path)

    # --- life cycle ---------------------------------------------------------------

    def interrupt(self) -> None:
        """Wake every waiting poll and make later ones return at once (shutting down)."""
        with self._changed:
            self._interrupted = True
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._interrupted = True
            self._changed.notify_all()
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def waiting_polls(self) -> int:
        """How many polls are waiting now (tests wait for a poller to be parked)."""
        with self._lock:
            return self._waiting

    # --- topics and user messages ---------------------------------------------------

    def topics(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn().execute("SELECT name, thread_id FROM topics ORDER BY thread_id")
            return [{"topic": name, "thread_id": tid} for name, tid in rows]

    def post_user_message(self, topic: str, text: str, client_id: str | None) -> Posted:
        """Post ``text`` as the user into ``topic`` (created at first use) and create its
        update. A client_id seen before in this topic posts nothing and returns the ids of
        the first post."""
        with self._changed, self._tx() as db:
            thread_id = self._thread_of(db, topic, create=True)
            assert thread_id is not None
            if client_id is not None:
                row = db.execute(
                    "SELECT message_id, update_id FROM messages"
                    " WHERE thread_id = ? AND client_id = ?",
                    (thread_id, client_id),
                ).fetchone()
                if row is not None:
                    return Posted(row[0], topic, thread_id, row[1], created=False)
            message_id = db.execute(
                "INSERT INTO messages (thread_id, sender, text, date, client_id)"
                " VALUES (?, 'user', ?, ?, ?)",
                (thread_id, text, int(self._clock()), client_id),
            ).lastrowid
            update_id = db.execute(
                "INSERT INTO updates (message_id) VALUES (?)", (message_id,)
            ).lastrowid
            db.execute(
                "UPDATE messages SET update_id = ? WHERE message_id = ?", (update_id, message_id)
            )
            self._changed.notify_all()
            assert message_id is not None and update_id is not None
            return Posted(message_id, topic, thread_id, update_id, created=True)

    def messages(self, topic: str) -> dict[str, Any]:
        """The topic's messages in order; an unknown topic has none (and no thread id)."""
        with self._lock:
            db = self._conn()
            thread_id = self._thread_of(db, topic, create=False)
            rows = db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE thread_id = ? ORDER BY message_id",
                (thread_id,),
            ).fetchall()
        return {"topic": topic, "thread_id": thread_id, "messages": [_listed(r) for r in rows]}

    # --- getUpdates ------------------------------------------------------------------

    def poll(self, offset: int | None, limit: int, timeout_s: float, poller: str) -> list[Any]:
        """Confirm every update below ``offset`` and return the rest (at most ``limit``),
        waiting up to ``timeout_s`` for one. Raises Superseded when a later poll ends this
        one while it waits; both outcomes are logged."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self._generation += 1
            mine = self._generation
            self._changed.notify_all()  # a poll still waiting is superseded by this one
            with self._tx() as db:
                self._confirm(db, offset)
            while True:
                if self._generation != mine:
                    self._log_poll(poller, offset, "conflict", 0)
                    raise Superseded("terminated by other getUpdates request")
                updates = self._updates(offset, limit)
                remaining = deadline - time.monotonic()
                if updates or remaining <= 0 or self._interrupted:
                    self._log_poll(poller, offset, "ok", len(updates))
                    return updates
                self._waiting += 1
                try:
                    self._changed.wait(remaining)
                finally:
                    self._waiting -= 1

    def _confirm(self, db: sqlite3.Connection, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:  # Telegram: the last -offset updates; every earlier one is forgotten
            row = db.execute(
                "SELECT update_id FROM updates ORDER BY update_id DESC LIMIT 1 OFFSET ?",
                (-offset - 1,),
            ).fetchone()
            if row is None:
                return
            offset = row[0]
        db.execute("DELETE FROM updates WHERE update_id < ?", (offset,))

    def _updates(self, offset: int | None, limit: int) -> list[dict[str, Any]]:
        floor = offset if offset is not None and offset > 0 else 0
        rows = self._conn().execute(
            "SELECT u.update_id, m.message_id, m.thread_id, m.date, m.text"
            " FROM updates u JOIN messages m ON m.message_id = u.message_id"
            " WHERE u.update_id >= ? ORDER BY u.update_id LIMIT ?",
            (floor, limit),
        )
        return [user_update(*row) for row in rows]

    def _log_poll(self, poller: str, offset: int | None, outcome: str, count: int) -> None:
        with self._tx() as db:
            row = (self._clock(), poller, offset, outcome, count)
            db.execute(f"INSERT INTO polls ({_cols(POLL_FIELDS[1:])}) VALUES (?,?,?,?,?)", row)

    def polls(self) -> list[dict[str, Any]]:
        """Every getUpdates call, oldest first: POLL_FIELDS."""
        with self._lock:
            rows = self._conn().execute(f"SELECT {_cols(POLL_FIELDS)} FROM polls ORDER BY seq")
            return [dict(zip(POLL_FIELDS, row, strict=True)) for row in rows]

    # --- sendMessage -----------------------------------------------------------------

    def send(
        self,
        *,
        chat_id: int,
        thread_id: int,
        text: str,
        reply_to: int | None,
        epoch: int | None,
        reply_key: str | None,
        poller: str,
    ) -> Sent:
        """One send attempt, decided in one transaction: refused when ``epoch`` is below
        the highest seen (stale), else the highest is raised; a reply key delivered before
        returns its message (repeat); else the message is delivered (accepted)."""
        with self._changed, self._tx() as db:
            if chat_id != CHAT_ID:
                raise ChatRefused("Bad Request: chat not found")
            known = db.execute("SELECT 1 FROM topics WHERE thread_id = ?", (thread_id,))
            if known.fetchone() is None:
                raise ChatRefused("Bad Request: message thread not found")
            highest = _meta(db, "highest_epoch")
            log = (reply_key, epoch, chat_id, thread_id, reply_to, poller)
            if epoch is not None and epoch < highest:
                self._log_send(db, "stale", None, log)
                return Sent("stale", None, highest)
            if epoch is not None and epoch > highest:
                highest = epoch
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('highest_epoch', ?)",
                    (epoch,),
                )
            if reply_key is not None:
                row = db.execute(
                    f"SELECT {_MSG_COLS} FROM messages WHERE reply_key = ?", (reply_key,)
                ).fetchone()
                if row is not None:
                    self._log_send(db, "repeat", row[0], log)
                    return Sent("repeat", _bot_message(row), highest)
            message_id = db.execute(
                "INSERT INTO messages (thread_id, sender, text, date, reply_to, epoch, reply_key)"
                " VALUES (?, 'bot', ?, ?, ?, ?, ?)",
                (thread_id, text, int(self._clock()), reply_to, epoch, reply_key),
            ).lastrowid
            row = db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE message_id = ?", (message_id,)
            ).fetchone()
            self._log_send(db, "accepted", message_id, log)
            return Sent("accepted", _bot_message(row), highest)

    def _log_send(
        self, db: sqlite3.Connection, outcome: str, message_id: int | None, log: tuple[Any, ...]
    ) -> None:
        reply_key, epoch, chat_id, thread_id, reply_to, poller = log
        row = (self._clock(), reply_key, epoch, outcome, chat_id, thread_id, reply_to)
        db.execute(
            f"INSERT INTO sends ({_cols(SEND_FIELDS[1:])}) VALUES (?,?,?,?,?,?,?,?,?)",
            (*row, message_id, poller),
        )

    def reply_status(self, reply_key: str) -> int | None:
        """The message id delivered under ``reply_key``, or None if none was."""
        with self._lock:
            query = "SELECT message_id FROM messages WHERE reply_key = ?"
            row = self._conn().execute(query, (reply_key,)).fetchone()
            return None if row is None else int(row[0])

    def sends(self, reply_key: str | None = None) -> list[dict[str, Any]]:
        """Every sendMessage attempt (with ``reply_key``: those with it), oldest first."""
        query = f"SELECT {_cols(SEND_FIELDS)} FROM sends"
        args: tuple[Any, ...] = ()
        if reply_key is not None:
            query, args = query + " WHERE reply_key = ?", (reply_key,)
        with self._lock:
            rows = self._conn().execute(query + " ORDER BY seq", args).fetchall()
        return [dict(zip(SEND_FIELDS, row, strict=True)) for row in rows]

    def highest_epoch(self) -> int:
        with self._lock:
            return _meta(self._conn(), "highest_epoch")

    # --- plumbing --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ChatClosed("the chat store is closed")
        return self._db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction; the caller holds the lock."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _thread_of(self, db: sqlite3.Connection, topic: str, *, create: bool) -> int | None:
        row = db.execute("SELECT thread_id FROM topics WHERE name = ?", (topic,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        return db.execute("INSERT INTO topics (name) VALUES (?)", (topic,)).lastrowid


def _open(path: Path) -> sqlite3.Connection:
    """Open (or create, 0600) the database; WAL files take the main file's permissions."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a file created by an earlier, careless hand
        finally:
            os.close(fd)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError("db", f"cannot open {path}: {exc}") from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise ConfigError("db", f"{path} has schema {version}, not {SCHEMA_VERSION}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.Error as exc:
        db.close()
        raise ConfigError("db", f"{path} is not a chat database: {exc}") from None
    except ConfigError:
        db.close()
        raise
    return db


def user_update(
    update_id: int, message_id: int, thread_id: int, date: int, text: str
) -> dict[str, Any]:
    """The update a user message makes (the shape of Telegram's, in a forum topic)."""
    message: dict[str, Any] = {"message_id": message_id, "message_thread_id": thread_id}
    message.update(is_topic_message=True, chat=dict(CHAT), date=date, text=text)
    return {"update_id": update_id, "message": {**message, "from": dict(USER)}}


def _cols(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _meta(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else int(row[0])


def _listed(row: tuple[Any, ...]) -> dict[str, Any]:
    message_id, _thread_id, sender, text, date, reply_to, epoch, reply_key = row
    item = {"message_id": message_id, "from": sender, "text": text, "date": date}
    if sender == "bot":
        item.update(reply_to=reply_to, epoch=epoch, reply_key=reply_key)
    return item


def _bot_message(row: tuple[Any, ...]) -> dict[str, Any]:
    message_id, thread_id, _sender, text, date, reply_to, _epoch, _key = row
    message: dict[str, Any] = {
        "message_id": message_id,
        "chat": dict(CHAT),
        "message_thread_id": thread_id,
        "is_topic_message": True,
        "date": date,
        "text": text,
        "from": dict(BOT),
    }
    if reply_to is not None:
        message["reply_to_message"] = {"message_id": reply_to}
    return message
