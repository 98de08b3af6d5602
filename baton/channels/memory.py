"""MemoryChannel: the in-memory twin of the bundled chat service as seen through
BotApiChannel(fencing=True). It passes the same contract suite
(tests/contract/test_channel.py) and adds inspection and fault hooks for other tests.

Semantics kept equal to the service (baton.channels.chat_store, chat_service):
- One chat (id 1); topics get thread ids 1, 2, 3... at first use; message and update ids
  are global and only grow.
- poll(offset) confirms (forgets) every update below offset and returns the rest, oldest
  first, at most 100, waiting up to timeout_s on a Condition with a deadline. A new poll
  ends one still waiting, which raises PollConflict.
- send() is decided atomically: an epoch below the highest seen is stale (nothing
  delivered), else the highest is raised; a reply key delivered before is a repeat
  (its original message id, nothing delivered twice); else it is delivered. Unknown chat
  or thread, empty or too long text: ChannelError, as the service's 400 is.
- post_user_message is idempotent per topic and client_id, and posts a message of any
  kind the service takes (text, photo, document, voice, sticker: chat_schema.KINDS, with
  a caption or an emoji, checked by the service's own chat_shapes.user_message);
  edit_user_message changes a user's text message and queues an ``edited_message``
  update. Both make the service's raw updates (chat_shapes.user_update).

Differences, on purpose: poll waits ``timeout_s`` as given (a float; BotApiChannel sends
whole seconds), and the raw updates pass through parse_update, so injected garbage is
dropped or skipped (and counted) exactly as the adapter does.

Fault hooks: fail_polls(n), fail_sends(n, delivered), inject_update(raw).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from baton.adapters.metrics import Counters
from baton.channels.base import (
    ChannelError,
    ChannelRejected,
    NotDelivered,
    OutboundReply,
    PollConflict,
    RateLimited,
    SendOutcome,
    Update,
)
from baton.channels.botapi import parse_updates, valid_unicode
from baton.channels.chat_schema import ChatRefused
from baton.channels.chat_shapes import user_message
from baton.channels.chat_store import CHAT_ID, MAX_SEND_CHARS, TOPIC_NAME, user_update

POLL_LIMIT = 100


class MemoryChannel:
    """A fencing chat in memory. Thread-safe."""

    def __init__(
        self,
        name: str = "memory",
        *,
        counters: Counters | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.counters = counters
        self._clock = clock
        self._cond = threading.Condition()
        self._threads: dict[str, int] = {}  # topic name -> thread id
        self._messages: dict[int, list[dict[str, Any]]] = {}  # thread id -> messages
        self._queue: list[tuple[int, object]] = []  # (update id, raw update), by id
        self._posted: dict[tuple[int, str], int] = {}  # (thread, client_id) -> message id
        self._by_key: dict[str, dict[str, Any]] = {}  # reply key -> the delivered message
        self._user_content: dict[int, dict[str, Any]] = {}  # message id -> kind, text...
        self._next_message_id = 1
        self._next_update_id = 1
        self._generation = 0
        self._waiting = 0
        self._fail_polls = 0
        self._fail_sends_refused = 0
        self._fail_sends: deque[bool | float | None] = deque()  # see fail_sends, throttle_sends
        self.highest_epoch = 0
        self.sends: list[dict[str, Any]] = []  # every send attempt, as /api/sends lists them
        self.polls: list[dict[str, Any]] = []  # every poll, as /api/polls lists them

    # --- the Channel port ---------------------------------------------------------------

    def check(self, timeout_s: float) -> str:
        return "memory answers"

    def poll(self, offset: int | None, timeout_s: float) -> list[Update]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            if self._fail_polls:
                self._fail_polls -= 1
                raise ChannelError(f"{self.name}: getUpdates failed (injected)")
            self._generation += 1
            mine = self._generation
            self._cond.notify_all()
            self._confirm(offset)
            while True:
                if self._generation != mine:
                    self._log_poll(offset, "conflict", 0)
                    raise PollConflict(f"{self.name}: terminated by other getUpdates request")
                raws = [raw for uid, raw in self._queue if offset is None or uid >= offset]
                raws = raws[:POLL_LIMIT]
                remaining = deadline - time.monotonic()
                if raws or remaining <= 0:
                    self._log_poll(offset, "ok", len(raws))
                    return parse_updates(raws, self.name, self.counters)
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1

    def send(self, reply: OutboundReply) -> SendOutcome:
        with self._cond:
            fault = self._fail_sends.popleft() if self._fail_sends else None
            if fault is False:
                raise ChannelError(f"{self.name}: sendMessage failed, not delivered (injected)")
            if fault is None and self._fail_sends_refused:
                self._fail_sends_refused -= 1
                raise NotDelivered(f"{self.name}: sendMessage: connection refused (injected)")
            if isinstance(fault, float):
                self._log_send(reply, "throttled", None)
                raise RateLimited(f"{self.name}: sendMessage: HTTP 429 (injected)", fault)
            self._check_send(reply)
            outcome = self._decide(reply)
            if fault is True:
                raise ChannelError(f"{self.name}: sendMessage answer lost, delivered (injected)")
            return outcome

    def delivered(self, reply_key: str) -> bool | None:
        with self._cond:
            return reply_key in self._by_key

    @property
    def next_update_id(self) -> int:
        """The id the next update will get: a cursor at it has passed every update."""
        with self._cond:
            return self._next_update_id

    def post_user_message(
        self,
        topic: str,
        text: str,
        client_id: str,
        *,
        kind: str = "text",
        caption: str | None = None,
        emoji: str | None = None,
    ) -> int:
        """Post as the user (the port's method); tests may post another ``kind`` with
        ``text`` "" and a ``caption`` (photo, document, voice) or ``emoji`` (sticker)."""
        if not TOPIC_NAME.fullmatch(topic):
            raise ChannelError(f"{self.name}: HTTP 400: bad topic name {topic!r}")
        if not client_id:
            raise ChannelError(f"{self.name}: HTTP 400: text and client_id must be non-empty")
        if kind == "text" and (not text or valid_unicode(text) is not text):
            raise ChannelError(f"{self.name}: HTTP 400: text and client_id must be non-empty")
        body = {"kind": kind, "text": text or None, "caption": caption, "emoji": emoji}
        try:
            content = user_message(body)
        except ChatRefused as exc:
            raise ChannelError(f"{self.name}: HTTP 400: {exc}") from None
        with self._cond:
            thread_id = self._thread(topic)
            known = self._posted.get((thread_id, client_id))
            if known is not None:
                return known
            message_id = self._new_message(thread_id, "user", text, kind=kind, caption=caption)
            self._posted[(thread_id, client_id)] = message_id
            self._user_content[message_id] = content
            self._queue_user_update(message_id, thread_id, None)
            return message_id

    def edit_user_message(self, topic: str, message_id: int, text: str) -> int:
        """Change the text of the user's text message ``message_id`` in ``topic`` and
        queue an ``edited_message`` update; return its update id. As the service: an
        unknown message, a bot's, one of another kind or an empty text: ChannelError."""
        if not text or valid_unicode(text) is not text:
            raise ChannelError(f"{self.name}: HTTP 400: text must be a non-empty string")
        with self._cond:
            thread_id = self._threads.get(topic)
            listed = self._messages.get(thread_id or 0, [])
            found = [m for m in listed if m["message_id"] == message_id]
            if thread_id is None or not found:
                raise ChannelError(f"{self.name}: HTTP 404: {topic!r} has no message {message_id}")
            content = self._user_content.get(message_id)
            if content is None or content["kind"] != "text":
                raise ChannelError(f"{self.name}: HTTP 400: only the user's text messages")
            found[0]["text"] = text
            self._user_content[message_id] = {**content, "text": text}
            return self._queue_user_update(message_id, thread_id, self._date())

    # --- inspection and fault hooks ------------------------------------------------------

    def messages(self, topic: str) -> list[dict[str, Any]]:
        """The topic's messages in order, as GET /api/topics/<topic>/messages lists them."""
        with self._cond:
            thread_id = self._threads.get(topic)
            return [dict(m) for m in self._messages.get(thread_id or 0, [])]

    def thread_id(self, topic: str) -> int | None:
        with self._cond:
            return self._threads.get(topic)

    @property
    def waiting_polls(self) -> int:
        with self._cond:
            return self._waiting

    def fail_polls(self, n: int) -> None:
        """The next ``n`` polls raise ChannelError (and confirm nothing)."""
        with self._cond:
            self._fail_polls += n

    def fail_sends(self, n: int, delivered: bool) -> None:
        """The next ``n`` sends raise ChannelError, after delivering (``delivered``: an
        answer lost on the way back) or without delivering."""
        with self._cond:
            self._fail_sends.extend([delivered] * n)

    def throttle_sends(self, n: int, retry_after_s: float) -> None:
        """The next ``n`` sends answer 429 (RateLimited): nothing is delivered."""
        with self._cond:
            self._fail_sends.extend([float(retry_after_s)] * n)

    def refuse_sends(self, n: int) -> None:
        """The next ``n`` sends find no one listening (NotDelivered): nothing delivered."""
        with self._cond:
            self._fail_sends_refused += n

    def inject_update(self, raw: object) -> int:
        """Queue a raw update as is (any JSON value) and return its place in the queue.
        A dict without "update_id" gets the next id; one with an integer update_id keeps
        it (later ids are made larger); anything else is queued with the next id."""
        with self._cond:
            if isinstance(raw, dict) and "update_id" not in raw:
                raw = {**raw, "update_id": self._next_update_id}
            uid = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(uid, int) or isinstance(uid, bool):
                uid = self._next_update_id
            self._next_update_id = max(self._next_update_id, uid + 1)
            self._queue.append((uid, raw))
            self._queue.sort(key=lambda item: item[0])
            self._cond.notify_all()
            return uid

    # --- inside the lock --------------------------------------------------------------

    def _confirm(self, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:  # as Telegram: keep the last -offset updates
            kept = self._queue[offset:] if -offset <= len(self._queue) else self._queue
            self._queue = list(kept)
            return
        self._queue = [(uid, raw) for uid, raw in self._queue if uid >= offset]

    def _check_send(self, reply: OutboundReply) -> None:
        if reply.chat_id != CHAT_ID:
            raise ChannelRejected(f"{self.name}: sendMessage: HTTP 400: chat not found")
        if reply.thread_id not in self._messages:
            raise ChannelRejected(f"{self.name}: sendMessage: HTTP 400: message thread not found")
        if not reply.text or len(reply.text) > MAX_SEND_CHARS:
            raise ChannelRejected(f"{self.name}: sendMessage: HTTP 400: text empty or too long")
        if valid_unicode(reply.text) is not reply.text:
            raise ChannelRejected(f"{self.name}: sendMessage: HTTP 400: text is not valid UTF-8")

    def _decide(self, reply: OutboundReply) -> SendOutcome:
        if reply.epoch < self.highest_epoch:
            self._log_send(reply, "stale", None)
            return SendOutcome("stale", highest_epoch=self.highest_epoch)
        self.highest_epoch = reply.epoch
        original = self._by_key.get(reply.reply_key)
        if original is not None:
            self._log_send(reply, "repeat", original["message_id"])
            return SendOutcome("repeat", message_id=original["message_id"])
        message_id = self._new_message(
            reply.thread_id,
            "bot",
            reply.text,
            reply_to=reply.reply_to,
            epoch=reply.epoch,
            reply_key=reply.reply_key,
        )
        self._by_key[reply.reply_key] = self._messages[reply.thread_id][-1]
        self._log_send(reply, "accepted", message_id)
        return SendOutcome("accepted", message_id=message_id)

    def _queue_user_update(self, message_id: int, thread_id: int, edit_date: int | None) -> int:
        """Queue the update of user message ``message_id`` (an edit's with ``edit_date``),
        shaped as the service's, and return its id."""
        content = self._user_content[message_id]
        date = next(m["date"] for m in self._messages[thread_id] if m["message_id"] == message_id)
        update_id = self._next_update_id
        self._next_update_id += 1
        raw = user_update(update_id, message_id, thread_id, date, **content, edit_date=edit_date)
        self._queue.append((update_id, raw))
        self._cond.notify_all()
        return update_id

    def _thread(self, topic: str) -> int:
        if topic not in self._threads:
            self._threads[topic] = len(self._threads) + 1
            self._messages[self._threads[topic]] = []
        return self._threads[topic]

    def _new_message(self, thread_id: int, sender: str, text: str, **extra: Any) -> int:
        """A message listed as the service lists it; ``extra``: a bot's reply_to, epoch
        and reply_key, a user's kind and caption (a text only for kind "text")."""
        message_id = self._next_message_id
        self._next_message_id += 1
        shown: str | None = text if extra.get("kind", "text") == "text" else None
        item = {"message_id": message_id, "from": sender, "text": shown, "date": self._date()}
        self._messages[thread_id].append({**item, **extra})
        return message_id

    def _log_send(self, reply: OutboundReply, outcome: str, message_id: int | None) -> None:
        self.sends.append(
            {
                "seq": len(self.sends) + 1,
                "time": self._clock(),
                "reply_key": reply.reply_key,
                "epoch": reply.epoch,
                "outcome": outcome,
                "chat_id": reply.chat_id,
                "thread_id": reply.thread_id,
                "reply_to": reply.reply_to,
                "message_id": message_id,
                "poller": "",
            }
        )

    def _log_poll(self, offset: int | None, outcome: str, count: int) -> None:
        entry = {"time": self._clock(), "poller": "", "offset": offset, "outcome": outcome}
        self.polls.append({**entry, "count": count})

    def _date(self) -> int:
        return int(self._clock())
