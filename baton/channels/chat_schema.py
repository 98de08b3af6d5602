"""The data of the bundled chat service: its SQLite schema and the migration to it, the
rows it keeps, its constants, and the errors and outcomes of ChatStore. No locking and
no waiting here: ChatStore does both. The message shapes live in chat_shapes, the fault
controls in chat_faults.

Invariants:
- A database file is at SCHEMA_VERSION after open_db returns, or open_db raised and left
  it as it was: a version-1 file is migrated in place (new columns, new tables) in one
  BEGIN IMMEDIATE transaction with its new user_version; any other version is refused.
- The file is created 0600 and runs in WAL mode with synchronous=FULL.
- updates.text is NULL while the update shows the message's current text; before a
  message is edited, its pending updates get their text frozen, so every update shows
  the text the message had when the update was made.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.core.errors import BatonError, ConfigError

CHAT_ID = 1
CHAT = {"id": CHAT_ID, "type": "supergroup"}
USER = {"id": 1000, "is_bot": False, "username": "user"}
BOT = {"id": 1, "is_bot": True, "username": "baton_bot"}
SCHEMA_VERSION = 2
MODES = ("fencing", "telegram")
KINDS = ("text", "photo", "document", "voice", "sticker")
MEDIA = ("photo", "document", "voice")  # the kinds that take a caption
MAX_SEND_CHARS = 65536  # a bot message's text in fencing mode, in characters
MAX_TELEGRAM_UNITS = 4096  # a bot message's text in telegram mode, in UTF-16 code units
MAX_CAPTION_UNITS = 1024  # a caption, in UTF-16 code units (as Telegram counts)
MAX_EMOJI_UNITS = 32  # a sticker's emoji, in UTF-16 code units
DEFAULT_EMOJI = "\N{THUMBS UP SIGN}"
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
    kind TEXT NOT NULL DEFAULT 'text',
    caption TEXT,
    emoji TEXT,
    UNIQUE (thread_id, client_id));
CREATE TABLE IF NOT EXISTS updates (
    update_id INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER NOT NULL,
    text TEXT, edit_date INTEGER);
CREATE TABLE IF NOT EXISTS sends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, reply_key TEXT,
    epoch INTEGER, outcome TEXT NOT NULL, chat_id INTEGER, thread_id INTEGER,
    reply_to INTEGER, message_id INTEGER, poller TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sends_by_key ON sends (reply_key);
CREATE TABLE IF NOT EXISTS polls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, poller TEXT NOT NULL,
    "offset" INTEGER, outcome TEXT NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS webhook (
    id INTEGER PRIMARY KEY CHECK (id = 1), url TEXT NOT NULL, time REAL NOT NULL);
"""
_FROM_V1 = (
    "ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'text'",
    "ALTER TABLE messages ADD COLUMN caption TEXT",
    "ALTER TABLE messages ADD COLUMN emoji TEXT",
    "ALTER TABLE updates ADD COLUMN text TEXT",
    "ALTER TABLE updates ADD COLUMN edit_date INTEGER",
)

MSG_COLS = "message_id, thread_id, sender, text, date, reply_to, epoch, reply_key, kind, caption"
UPDATE_QUERY = (
    "SELECT u.update_id, m.message_id, m.thread_id, m.date, COALESCE(u.text, m.text),"
    " m.kind, m.caption, m.emoji, u.edit_date"
    " FROM updates u JOIN messages m ON m.message_id = u.message_id"
)
SEND_FIELDS: tuple[str, ...] = ("seq", "time", "reply_key", "epoch", "outcome", "chat_id")
SEND_FIELDS += ("thread_id", "reply_to", "message_id", "poller")
POLL_FIELDS = ("seq", "time", "poller", "offset", "outcome", "count")


class ChatRefused(BatonError):
    """The chat refuses the request (unknown chat or thread, bad parameters)."""

    code = "bad_request"


class Superseded(BatonError):
    """A later getUpdates ended this one while it was waiting."""

    code = "poll_conflict"


class WebhookActive(BatonError):
    """getUpdates is refused while a webhook is set."""

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
    outcome: str  # "accepted" | "repeat" | "stale" | "throttled"
    message: dict[str, Any] | None  # the delivered (or original) message, else None
    highest_epoch: int
    retry_after: int | None = None  # throttled: seconds until a send may pass


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ConfigError("mode", f"the chat's mode is one of {', '.join(MODES)}, not {mode!r}")
    return str(mode)


# --- the file -----------------------------------------------------------------------------


def open_db(path: Path) -> sqlite3.Connection:
    """Open (or create, 0600) the database at SCHEMA_VERSION, migrating a version-1 file;
    WAL files take the main file's permissions."""
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
        if version not in (0, 1, SCHEMA_VERSION):
            raise ConfigError("db", f"{path} has schema {version}, not {SCHEMA_VERSION}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        _migrate(db, version)
    except sqlite3.Error as exc:
        db.close()
        raise ConfigError("db", f"{path} is not a chat database: {exc}") from None
    except ConfigError:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """From ``version`` (0: new, 1, or current) to SCHEMA_VERSION in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if version == 1:
            for statement in _FROM_V1:
                db.execute(statement)
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def confirm(db: sqlite3.Connection, offset: int | None) -> None:
    """Forget every update below ``offset`` (negative: keep the last -offset ones)."""
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


def webhook_url(db: sqlite3.Connection) -> str:
    row = db.execute("SELECT url FROM webhook WHERE id = 1").fetchone()
    return "" if row is None else str(row[0])


def cols(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def meta(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else int(row[0])
