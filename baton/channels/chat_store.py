"""ChatStore: the state of the bundled chat service, in one SQLite file.

One chat (id 1, a supergroup) whose named topics get thread ids 1, 2, 3... at first use.
User messages (text, photo, document, voice, sticker) and their edits create updates;
getUpdates hands them out until an offset confirms them. In "fencing" mode bot messages
(sendMessage) are fenced by epoch and deduplicated by reply key; in "telegram" mode, as
on Telegram, every valid send is delivered (no epoch, no key, no dedup).

Invariants:
- The file is created 0600 and runs in WAL mode with synchronous=FULL: an answer the
  service gave (a delivered reply, a confirmed offset, a raised epoch, a set webhook)
  survives kill -9 and power loss, so a restart loses nothing. The schema and its
  migration live in baton.channels.chat_schema, the writes in chat_writes.
- One lock guards the one connection and the in-memory faults. Every check-and-write is
  one ``BEGIN IMMEDIATE`` transaction under it: a send's throttle, stale check, the epoch
  it raises, the repeat check and the delivery are one atomic step.
- message_id, update_id and thread_id come from AUTOINCREMENT columns: they only grow
  and are never reused, not even after confirmed updates are deleted.
- Fencing mode: the highest epoch seen never decreases. A send with an epoch below it is
  refused (stale) and changes nothing but the send log. A reply key is delivered at most
  once. Telegram mode never reads nor raises the epoch and stores no reply key.
- A throttled send (429) delivers nothing and is logged "throttled". Faults live in
  memory only: a restart forgets them.
- A delivered send waits send_delay_ms after its commit, with the lock released, before
  it answers; lowering the delay or interrupting the store releases it at once.
- Long polls wait on a Condition over the same lock, with a deadline. A new poll ends a
  poll still waiting (it raises Superseded), as Telegram's getUpdates does. While a
  webhook is set, getUpdates raises WebhookActive and confirms nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from baton.channels.chat_faults import Limiter
from baton.channels.chat_schema import (
    CHAT_ID,
    KINDS,
    MAX_SEND_CHARS,
    MSG_COLS,
    POLL_FIELDS,
    REPLY_KEY,
    SEND_FIELDS,
    TOPIC_NAME,
    UPDATE_QUERY,
    ChatClosed,
    ChatRefused,
    Posted,
    Sent,
    Superseded,
    WebhookActive,
    check_mode,
    cols,
    confirm,
    meta,
    open_db,
    webhook_url,
)
from baton.channels.chat_shapes import listed, update_of, user_update
from baton.channels.chat_writes import decide, edit_message, post_message, thread_of

__all__ = [  # what other modules import from here
    "CHAT_ID",
    "MAX_SEND_CHARS",
    "POLL_FIELDS",
    "REPLY_KEY",
    "SEND_FIELDS",
    "TOPIC_NAME",
    "ChatClosed",
    "ChatRefused",
    "ChatStore",
    "Posted",
    "Sent",
    "Superseded",
    "WebhookActive",
    "user_update",
]


class ChatStore:
    """The chat service's state. Thread-safe; every method is one transaction."""

    def __init__(
        self, path: Path, clock: Callable[[], float] = time.time, mode: str = "fencing"
    ) -> None:
        self.mode = check_mode(mode)
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0  # bumped by every poll: a waiting poll with an older one ends
        self._waiting = 0
        self._interrupted = False
        self._limiter = Limiter(clock())
        self._db: sqlite3.Connection | None = open_db(self.path)

    # --- life cycle ---------------------------------------------------------------

    def interrupt(self) -> None:
        """Wake every waiting poll and held send, and make later ones return at once."""
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

    # --- faults (in memory) -----------------------------------------------------------

    def faults(self) -> dict[str, Any]:
        """The current fault values (chat_faults.Faults); throttle_next counts the 429s
        still to come."""
        with self._lock:
            return asdict(self._limiter.faults)

    def set_faults(self, /, **values: Any) -> dict[str, Any]:
        """Set any of Faults' fields; a bad name or value raises ChatRefused and changes
        nothing. A new rate or burst refills the bucket. Returns the new values."""
        with self._changed:
            faults = self._limiter.set(values, self._clock())
            self._changed.notify_all()  # a held send re-reads send_delay_ms
            return asdict(faults)

    # --- topics and user messages ---------------------------------------------------

    def topics(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn().execute("SELECT name, thread_id FROM topics ORDER BY thread_id")
            return [{"topic": name, "thread_id": tid} for name, tid in rows]

    def post_user_message(
        self,
        topic: str,
        text: str,
        client_id: str | None,
        *,
        kind: str = "text",
        caption: str | None = None,
        emoji: str | None = None,
    ) -> Posted:
        """Post a message of ``kind`` as the user into ``topic`` (created at first use)
        and create its update. A client_id seen before in this topic posts nothing and
        returns the ids of the first post. ``text`` is "" for every kind but text."""
        if kind not in KINDS:
            raise ChatRefused(f"kind must be one of {', '.join(KINDS)}")
        with self._changed, self._tx() as db:
            posted = post_message(
                db, self._clock, topic, text, client_id, kind=kind, caption=caption, emoji=emoji
            )
            if posted.created:
                self._changed.notify_all()
            return posted

    def edit_user_message(self, topic: str, message_id: int, text: str) -> Posted:
        """Change the text of the user's text message ``message_id`` in ``topic`` and
        create an edited_message update (Posted names it). Unknown: NotFound; a bot's
        message or one of another kind: ChatRefused."""
        with self._changed, self._tx() as db:
            edited = edit_message(db, self._clock, topic, message_id, text)
            self._changed.notify_all()
            return edited

    def messages(self, topic: str) -> dict[str, Any]:
        """The topic's messages in order; an unknown topic has none (and no thread id)."""
        with self._lock:
            db = self._conn()
            thread_id = thread_of(db, topic, create=False)
            rows = db.execute(
                f"SELECT {MSG_COLS} FROM messages WHERE thread_id = ? ORDER BY message_id",
                (thread_id,),
            ).fetchall()
        return {
            "topic": topic,
            "thread_id": thread_id,
            "messages": [listed(r) for r in rows],
        }

    # --- getUpdates and the webhook ----------------------------------------------------

    def poll(self, offset: int | None, limit: int, timeout_s: float, poller: str) -> list[Any]:
        """Confirm every update below ``offset`` and return the rest (at most ``limit``),
        waiting up to ``timeout_s`` for one. Raises Superseded when a later poll ends this
        one while it waits, WebhookActive while a webhook is set; every outcome is logged."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            with self._tx() as db:
                hooked = webhook_url(db) != ""
                if not hooked:
                    confirm(db, offset)
            if hooked:
                self._refuse_webhook(poller, offset)
            self._generation += 1
            mine = self._generation
            self._changed.notify_all()  # a poll still waiting is superseded by this one
            while True:
                if self._generation != mine:
                    if webhook_url(self._conn()) != "":
                        self._refuse_webhook(poller, offset)
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

    def _refuse_webhook(self, poller: str, offset: int | None) -> None:
        self._log_poll(poller, offset, "webhook", 0)
        raise WebhookActive("can't use getUpdates method while webhook is active")

    def _updates(self, offset: int | None, limit: int) -> list[dict[str, Any]]:
        floor = offset if offset is not None and offset > 0 else 0
        query = UPDATE_QUERY + " WHERE u.update_id >= ? ORDER BY u.update_id LIMIT ?"
        return [update_of(row) for row in self._conn().execute(query, (floor, limit))]

    def _log_poll(self, poller: str, offset: int | None, outcome: str, count: int) -> None:
        with self._tx() as db:
            row = (self._clock(), poller, offset, outcome, count)
            db.execute(f"INSERT INTO polls ({cols(POLL_FIELDS[1:])}) VALUES (?,?,?,?,?)", row)

    def polls(self) -> list[dict[str, Any]]:
        """Every getUpdates call, oldest first: POLL_FIELDS."""
        with self._lock:
            rows = self._conn().execute(f"SELECT {cols(POLL_FIELDS)} FROM polls ORDER BY seq")
            return [dict(zip(POLL_FIELDS, row, strict=True)) for row in rows]

    def set_webhook(self, url: str) -> None:
        """Set (or replace) the webhook; a waiting poll ends (refused: webhook)."""
        with self._changed, self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO webhook (id, url, time) VALUES (1, ?, ?)",
                (url, self._clock()),
            )
            self._generation += 1
            self._changed.notify_all()

    def delete_webhook(self) -> bool:
        """Remove the webhook; False when none was set."""
        with self._lock, self._tx() as db:
            return db.execute("DELETE FROM webhook").rowcount > 0

    def webhook_info(self) -> dict[str, Any]:
        """Telegram's WebhookInfo: the url ("" when none) and the pending update count."""
        with self._lock:
            db = self._conn()
            pending = db.execute("SELECT COUNT(*) FROM updates").fetchone()[0]
            return {"url": webhook_url(db), "pending_update_count": int(pending)}

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
        """One send attempt, decided in one transaction: refused when throttled; in
        fencing mode refused when ``epoch`` is below the highest seen (stale), else the
        highest is raised, and a reply key delivered before returns its message (repeat);
        else the message is delivered (accepted). Telegram mode ignores epoch and key.
        An accepted send then waits send_delay_ms (lock released) before it returns."""
        if self.mode == "telegram":
            epoch = reply_key = None
        log = (reply_key, epoch, chat_id, thread_id, reply_to, poller)
        with self._changed:
            sent = self._decide(text, log)
            if sent.outcome == "accepted":
                self._hold(time.monotonic())
        return sent

    def _decide(self, text: str, log: tuple[Any, ...]) -> Sent:
        with self._tx() as db:
            return decide(db, self._limiter, self._clock, text, log)

    def _hold(self, since: float) -> None:
        """Wait until send_delay_ms after ``since`` (re-read at every change), the lock
        released while waiting; the caller holds it and has committed."""
        while not self._interrupted:
            remaining = since + self._limiter.faults.send_delay_ms / 1000 - time.monotonic()
            if remaining <= 0:
                return
            self._changed.wait(remaining)

    def reply_status(self, reply_key: str) -> int | None:
        """The message id delivered under ``reply_key``, or None if none was."""
        with self._lock:
            query = "SELECT message_id FROM messages WHERE reply_key = ?"
            row = self._conn().execute(query, (reply_key,)).fetchone()
            return None if row is None else int(row[0])

    def sends(self, reply_key: str | None = None) -> list[dict[str, Any]]:
        """Every sendMessage attempt (with ``reply_key``: those with it), oldest first."""
        query = f"SELECT {cols(SEND_FIELDS)} FROM sends"
        args: tuple[Any, ...] = ()
        if reply_key is not None:
            query, args = query + " WHERE reply_key = ?", (reply_key,)
        with self._lock:
            rows = self._conn().execute(query + " ORDER BY seq", args).fetchall()
        return [dict(zip(SEND_FIELDS, row, strict=True)) for row in rows]

    def highest_epoch(self) -> int:
        with self._lock:
            return meta(self._conn(), "highest_epoch")

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
