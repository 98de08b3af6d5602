"""The message shapes of the bundled chat service: the checks a posted user message
passes, and the Telegram-shaped objects (updates, bot messages) and listing items made
from the rows ChatStore keeps. Pure functions: no database, no locking, no clock.

Invariants:
- Every message shape is Telegram's: a text message has ``text``; a photo, document or
  voice message has its file object and an optional ``caption``; a sticker has its
  sticker object. An edit's update carries ``edited_message`` with ``edit_date``.
- A checked text is valid Unicode (no lone surrogate) and, where a limit applies, no
  longer than it in UTF-16 code units (as Telegram counts); a bad one raises
  ChatRefused, so nothing undecodable is ever stored.
"""

from __future__ import annotations

from typing import Any

from baton.channels.chat_schema import (
    BOT,
    CHAT,
    DEFAULT_EMOJI,
    KINDS,
    MAX_CAPTION_UNITS,
    MAX_EMOJI_UNITS,
    MEDIA,
    USER,
    ChatRefused,
)


def utf16_units(text: str) -> int:
    """A text's length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def user_update(
    update_id: int,
    message_id: int,
    thread_id: int,
    date: int,
    text: str,
    *,
    kind: str = "text",
    caption: str | None = None,
    emoji: str | None = None,
    edit_date: int | None = None,
) -> dict[str, Any]:
    """The update a user message (or its edit, with ``edit_date``) makes: the shape of
    Telegram's, in a forum topic."""
    message: dict[str, Any] = {"message_id": message_id, "message_thread_id": thread_id}
    message.update(is_topic_message=True, chat=dict(CHAT), date=date, **{"from": dict(USER)})
    message.update(content(message_id, kind, text, caption, emoji))
    if edit_date is None:
        return {"update_id": update_id, "message": message}
    return {"update_id": update_id, "edited_message": {**message, "edit_date": edit_date}}


def update_of(row: tuple[Any, ...]) -> dict[str, Any]:
    """The update of an UPDATE_QUERY row."""
    kind, caption, emoji, edit_date = row[5:]
    return user_update(*row[:5], kind=kind, caption=caption, emoji=emoji, edit_date=edit_date)


def content(
    message_id: int, kind: str, text: str, caption: str | None, emoji: str | None
) -> dict[str, Any]:
    """A message's content fields by kind; file ids are made from the message id."""
    if kind == "text":
        return {"text": text}
    ids = {"file_id": f"baton-{kind}-{message_id}", "file_unique_id": f"{kind}{message_id}"}
    if kind == "sticker":
        sticker = {**ids, "type": "regular", "width": 512, "height": 512}
        sticker.update(is_animated=False, is_video=False, emoji=emoji or DEFAULT_EMOJI)
        return {"sticker": sticker}
    found: dict[str, Any] = {
        "photo": [{**ids, "width": 90, "height": 90, "file_size": 1024}],
        "document": {**ids, "file_name": "file.bin", "file_size": 1024},
        "voice": {**ids, "duration": 2},
    }
    media = {kind: found[kind]}
    return media if caption is None else {**media, "caption": caption}


def user_message(body: dict[str, Any]) -> dict[str, Any]:
    """The checked content of a posted user message: kind, text ("" but for text),
    caption (the media kinds), emoji (a sticker). Raises ChatRefused."""
    kind = body.get("kind", "text")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ChatRefused(f"kind must be one of {', '.join(KINDS)}")
    text = body.get("text")
    if kind == "text":
        if not isinstance(text, str) or not text:
            raise ChatRefused("text must be a non-empty string")
        check_unicode(text, "text")
    elif text is not None:
        raise ChatRefused(f"a {kind} message has no text")
    caption = optional_text(body, "caption", kind in MEDIA, MAX_CAPTION_UNITS)
    emoji = optional_text(body, "emoji", kind == "sticker", MAX_EMOJI_UNITS)
    if kind == "sticker" and emoji is None:
        emoji = DEFAULT_EMOJI
    return {"kind": kind, "text": text or "", "caption": caption, "emoji": emoji}


def optional_text(
    body: dict[str, Any], name: str, allowed: bool = True, max_units: int | None = None
) -> str | None:
    """``body[name]``: None when absent, else a non-empty, valid string."""
    value = body.get(name)
    if value is None:
        return None
    if not allowed:
        raise ChatRefused(f"a {body.get('kind', 'text')} message takes no {name}")
    if not isinstance(value, str) or not value:
        raise ChatRefused(f"{name} must be a non-empty string when given")
    check_unicode(value, name)
    if max_units is not None and utf16_units(value) > max_units:
        raise ChatRefused(f"{name} is longer than {max_units} UTF-16 code units")
    return value


def check_unicode(text: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatRefused(f"Bad Request: {name} must be valid UTF-8 (a lone surrogate)") from None


def listed(row: tuple[Any, ...]) -> dict[str, Any]:
    """A MSG_COLS row as GET /api/topics/<topic>/messages lists it."""
    message_id, _thread_id, sender, text, date, reply_to, epoch, reply_key, kind, caption = row
    item = {"message_id": message_id, "from": sender, "kind": kind}
    item.update(text=text if kind == "text" else None, caption=caption, date=date)
    if sender == "bot":
        item.update(reply_to=reply_to, epoch=epoch, reply_key=reply_key)
    return item


def bot_message(row: tuple[Any, ...]) -> dict[str, Any]:
    """A bot's MSG_COLS row as sendMessage answers it."""
    message_id, thread_id, _sender, text, date, reply_to, *_ = row
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
