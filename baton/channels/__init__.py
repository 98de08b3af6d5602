"""Channels (bundled chat service, Telegram). Arrives with the exactly-once issue.

open_channel(spec) turns the ``channel`` knob into an adapter:
  local:http://HOST:PORT   the bundled chat service (`baton chat-server`), with fencing
  telegram                 Telegram's Bot API at https://api.telegram.org, no fencing
  telegram:URL             a Bot API at URL (tests point it at the bundled service)
"""

from __future__ import annotations

import urllib.parse

from baton.adapters.metrics import Counters
from baton.channels.base import Channel
from baton.channels.botapi import BotApiChannel
from baton.core.errors import ConfigError

TELEGRAM_API = "https://api.telegram.org"

__all__ = ["TELEGRAM_API", "open_channel"]


def open_channel(
    spec: str,
    *,
    poller_id: str,
    telegram_token: str | None,
    counters: Counters | None = None,
    chat_user_token: str | None = None,
) -> Channel:
    """The channel ``spec`` names; ConfigError("channel", ...) when it names none.
    ``telegram_token`` is the bot token (Telegram's, or the bundled chat service's for
    ``local:``); ``chat_user_token`` lets a ``local:`` channel post as the user."""
    kind, _, url = spec.partition(":")
    if kind == "local" and url:
        if not telegram_token:
            raise ConfigError(
                "channel",
                "local needs the chat service's bot token (its DB.bot-token file) in "
                "machine/telegram-token or BATON_TELEGRAM_TOKEN",
            )
        return BotApiChannel(
            "local",
            _base_url(url, ("http",)),
            telegram_token,
            fencing=True,
            poller_id=poller_id,
            counters=counters,
            user_token=chat_user_token,
        )
    if kind == "telegram":
        if not telegram_token:
            raise ConfigError("channel", "telegram needs a bot token (BATON_TELEGRAM_TOKEN)")
        base = _base_url(url, ("http", "https")) if url else TELEGRAM_API
        return BotApiChannel(
            "telegram",
            base,
            telegram_token,
            fencing=False,
            poller_id=poller_id,
            counters=counters,
        )
    raise ConfigError("channel", "use local:http://host:port or telegram")


def _base_url(url: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError("channel", f"{url!r} is not a URL") from None
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError("channel", f"{url!r}: use {' or '.join(schemes)}://host:port")
    return url.rstrip("/")
