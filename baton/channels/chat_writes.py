"""The writes of ChatStore: each function runs inside the caller's one BEGIN IMMEDIATE
transaction, under its lock, and neither locks, waits, notifies nor commits; ChatStore
does all four. The clock is the store's, passed in.

Invariants:
- A user message is posted at most once per (topic, client_id); a post and its update,
  an edit and its edited_message update, are written together or not at all.
- message_id, update_id and thread_id come from AUTOINCREMENT columns: they only grow
  and are never reused.
- A send is decided in one step: refused when throttled (nothing delivered, logged
  "throttled"); in fencing mode refused when its epoch is below the highest seen (stale,
  nothing changes but the send log), else the highest is raised (it never decreases),
  and a reply key is delivered at most once (repeat). Every attempt is logged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from baton.channels.chat_faults import Limiter
from baton.channels.chat_schema import (
    CHAT_ID,
    MSG_COLS,
    SEND_FIELDS,
    ChatRefused,
    Posted,
    Sent,
    cols,
    meta,
)
from baton.channels.chat_shapes import bot_message
from baton.core.errors import NotFound

Clock = Callable[[], float]


def thread_of(db: sqlite3.Connection, topic: str, *, create: bool) -> int | None:
    row = db.execute("SELECT thread_id FROM topics WHERE name = ?", (topic,)).fetchone()
    if row is not None:
        return int(row[0])
    if not create:
        return None
    return db.execute("INSERT INTO topics (name) VALUES (?)", (topic,)).lastrowid


def post_message(
    db: sqlite3.Connection,
    clock: Clock,
    topic: str,
    text: str,
    client_id: str | None,
    *,
    kind: str,
    caption: str | None,
    emoji: str | None,
) -> Posted:
    """Post a message of ``kind`` as the user into ``topic`` (created at first use) and
    create its update; a client_id seen before in this topic posts nothing and returns
    the ids of the first post (created=False)."""
    thread_id = thread_of(db, topic, create=True)
    assert thread_id is not None
    if client_id is not None:
        row = db.execute(
            "SELECT message_id, update_id FROM messages WHERE thread_id = ? AND client_id = ?",
            (thread_id, client_id),
        ).fetchone()
        if row is not None:
            return Posted(row[0], topic, thread_id, row[1], created=False)
    message_id = db.execute(
        "INSERT INTO messages (thread_id, sender, text, date, client_id, kind, caption,"
        " emoji) VALUES (?, 'user', ?, ?, ?, ?, ?, ?)",
        (thread_id, text, int(clock()), client_id, kind, caption, emoji),
    ).lastrowid
    update_id = db.execute("INSERT INTO updates (message_id) VALUES (?)", (message_id,)).lastrowid
    db.execute("UPDATE messages SET update_id = ? WHERE message_id = ?", (update_id, message_id))
    assert message_id is not None and update_id is not None
    return Posted(message_id, topic, thread_id, update_id, created=True)


def edit_message(
    db: sqlite3.Connection, clock: Clock, topic: str, message_id: int, text: str
) -> Posted:
    """Change the text of the user's text message and create an edited_message update.
    Unknown: NotFound; a bot's message or one of another kind: ChatRefused."""
    thread_id = thread_of(db, topic, create=False)
    row = db.execute(
        "SELECT sender, kind, text FROM messages WHERE message_id = ? AND thread_id = ?",
        (message_id, thread_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"topic {topic!r} has no message {message_id}")
    sender, kind, old_text = row
    if sender != "user" or kind != "text":
        raise ChatRefused("only the user's text messages can be edited")
    db.execute(  # pending updates keep the text they were made with
        "UPDATE updates SET text = ? WHERE message_id = ? AND text IS NULL",
        (old_text, message_id),
    )
    db.execute("UPDATE messages SET text = ? WHERE message_id = ?", (text, message_id))
    update_id = db.execute(
        "INSERT INTO updates (message_id, edit_date) VALUES (?, ?)",
        (message_id, int(clock())),
    ).lastrowid
    assert thread_id is not None and update_id is not None
    return Posted(message_id, topic, thread_id, update_id, created=True)


def decide(
    db: sqlite3.Connection, limiter: Limiter, clock: Clock, text: str, log: tuple[Any, ...]
) -> Sent:
    """One send attempt (``log``: reply_key, epoch, chat_id, thread_id, reply_to, poller;
    epoch and reply_key None in telegram mode): throttled, stale, repeat or accepted."""
    reply_key, epoch, chat_id, thread_id, reply_to, _poller = log
    if chat_id != CHAT_ID:
        raise ChatRefused("Bad Request: chat not found")
    known = db.execute("SELECT 1 FROM topics WHERE thread_id = ?", (thread_id,))
    if known.fetchone() is None:
        raise ChatRefused("Bad Request: message thread not found")
    highest = meta(db, "highest_epoch")
    retry_after = limiter.take(clock())
    if retry_after is not None:
        log_send(db, clock, "throttled", None, log)
        return Sent("throttled", None, highest, retry_after)
    if epoch is not None and epoch < highest:
        log_send(db, clock, "stale", None, log)
        return Sent("stale", None, highest)
    if epoch is not None and epoch > highest:
        highest = epoch
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('highest_epoch', ?)",
            (epoch,),
        )
    if reply_key is not None:
        row = db.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE reply_key = ?", (reply_key,)
        ).fetchone()
        if row is not None:
            log_send(db, clock, "repeat", row[0], log)
            return Sent("repeat", bot_message(row), highest)
    message_id = db.execute(
        "INSERT INTO messages (thread_id, sender, text, date, reply_to, epoch, reply_key)"
        " VALUES (?, 'bot', ?, ?, ?, ?, ?)",
        (thread_id, text, int(clock()), reply_to, epoch, reply_key),
    ).lastrowid
    row = db.execute(
        f"SELECT {MSG_COLS} FROM messages WHERE message_id = ?", (message_id,)
    ).fetchone()
    log_send(db, clock, "accepted", message_id, log)
    return Sent("accepted", bot_message(row), highest)


def log_send(
    db: sqlite3.Connection,
    clock: Clock,
    outcome: str,
    message_id: int | None,
    log: tuple[Any, ...],
) -> None:
    reply_key, epoch, chat_id, thread_id, reply_to, poller = log
    row = (clock(), reply_key, epoch, outcome, chat_id, thread_id, reply_to)
    db.execute(
        f"INSERT INTO sends ({cols(SEND_FIELDS[1:])}) VALUES (?,?,?,?,?,?,?,?,?)",
        (*row, message_id, poller),
    )
