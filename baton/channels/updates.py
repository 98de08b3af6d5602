"""Parsing Bot API updates: any JSON value in, an Update (or None) out. Pure: no I/O, no
clock, standard library only. BotApiChannel (baton.channels.botapi) and the in-memory
channel (baton.channels.memory) both parse through here, so they agree.

Invariants:
- parse_update() never raises on any JSON value: an update without an integer
  update_id is None (dropped and counted); one that carries nothing to answer is a
  SkippedUpdate naming why (``no message``; ``edited``: baton answers messages, not
  edits; ``service``: a note of Telegram's, such as a member joining, that no person
  wrote; ``malformed``: a field of the wrong type), counted as ``channel.skipped.<why>``;
  every other message, of any kind, is an InboundMessage. Its ``kind`` is the first of
  its media fields (animation before document: Telegram sets both), "text" for a text
  message, "other" for a message with neither (a location, a poll); its ``text`` is the
  message's text, else its caption, else a sticker's emoji, else "", and is valid
  Unicode (lone surrogates become U+FFFD, counted as ``channel.replaced_text``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from baton.adapters.metrics import Counters
from baton.channels.base import InboundMessage, SkippedUpdate, Update


def parse_update(raw: object, channel: str) -> Update | None:
    """One raw update (any JSON value) -> InboundMessage, SkippedUpdate, or None when it
    has no usable update_id. Never raises."""
    return _parse(raw, channel)[0]


def parse_updates(raws: Iterable[object], channel: str, counters: Counters | None) -> list[Update]:
    """parse_update over a poll's result, counting what is dropped, skipped or repaired."""
    out: list[Update] = []
    for raw in raws:
        update, replaced = _parse(raw, channel)
        if counters is not None:
            if update is None:
                counters.inc("channel.dropped_no_id")
            elif isinstance(update, SkippedUpdate):
                counters.inc("channel.skipped." + update.reason.replace(" ", "_"))
            if replaced:
                counters.inc("channel.replaced_text")
        if update is not None:
            out.append(update)
    return out


def is_int(value: object) -> bool:
    """A JSON integer (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(raw: object, channel: str) -> tuple[Update | None, bool]:
    if not isinstance(raw, dict) or not is_int(raw.get("update_id")):
        return None, False
    update_id: int = raw["update_id"]
    msg = raw.get("message")
    if msg is None:
        edited = raw.get("edited_message") is not None
        return SkippedUpdate(update_id, "edited" if edited else "no message"), False
    if not isinstance(msg, dict):
        return SkippedUpdate(update_id, "malformed"), False
    chat = msg.get("chat")
    # A thread is a topic only in a forum (is_topic_message); elsewhere Telegram sets
    # message_thread_id on plain replies, and each reply chain is no conversation of its own.
    thread = msg.get("message_thread_id", 0) if msg.get("is_topic_message") is True else 0
    thread = 0 if thread is None else thread
    if not (
        is_int(msg.get("message_id"))
        and isinstance(chat, dict)
        and is_int(chat.get("id"))
        and is_int(thread)
    ):
        return SkippedUpdate(update_id, "malformed"), False
    content = _content(msg)
    if content is None:
        return SkippedUpdate(update_id, "malformed"), False
    kind, text = content
    if kind == "other" and not _SERVICE.isdisjoint(msg):
        return SkippedUpdate(update_id, "service"), False
    clean = valid_unicode(text)
    message = InboundMessage(
        channel=channel,
        update_id=update_id,
        chat_id=chat["id"],
        thread_id=thread,
        message_id=msg["message_id"],
        text=clean,
        sender=_sender(msg.get("from")),
        kind=kind,
    )
    return message, clean is not text


# A message's media fields and their JSON types, in the order they are looked for: an
# animation carries "document" too (Telegram keeps it for older clients).
_MEDIA: tuple[tuple[str, type], ...] = (
    ("animation", dict),
    ("photo", list),
    ("video", dict),
    ("audio", dict),
    ("voice", dict),
    ("document", dict),
    ("sticker", dict),
)
# Fields of Telegram's service messages: notes about the chat that no person wrote.
_SERVICE = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
        "write_access_allowed",
        "proximity_alert_triggered",
        "boost_added",
        "chat_background_set",
    }
)


def _content(msg: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, text) of a message, or None when a content field has the wrong type."""
    text = msg.get("text")
    if text is not None:
        return ("text", text) if isinstance(text, str) else None
    for kind, shape in _MEDIA:
        media = msg.get(kind)
        if media is None:
            continue
        if not isinstance(media, shape):
            return None
        if kind == "sticker" and isinstance(media, dict):
            words = media.get("emoji")  # a sticker says its emoji
        else:
            words = msg.get("caption")
        if words is None:
            return kind, ""
        return (kind, words) if isinstance(words, str) else None
    return "other", ""


def valid_unicode(text: str) -> str:
    """``text`` itself when it encodes as UTF-8, else a copy with every lone surrogate
    replaced by U+FFFD (``encode("utf-8", "replace")`` would give "?")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _sender(sender: object) -> str:
    if not isinstance(sender, dict):
        return ""
    username = sender.get("username")
    if isinstance(username, str) and username:
        return valid_unicode(username)
    return str(sender["id"]) if is_int(sender.get("id")) else ""
