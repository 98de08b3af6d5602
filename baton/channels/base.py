"""The Channel port: where messages come from and replies go to.

One adapter (BotApiChannel, baton.channels.botapi) speaks the shape of Telegram's Bot API
and serves both the bundled chat service (``local:http://host:port``) and Telegram
(``telegram``); MemoryChannel (baton.channels.memory) is its in-memory twin. Both pass
tests/contract/test_channel.py.

Contract:
- ``poll(offset, timeout_s)`` returns the updates with ``update_id >= offset`` (all
  unconfirmed ones when offset is None), oldest first, at most ``limit``; calling it with an
  offset confirms every update below it, which is then never returned again. It waits up
  to ``timeout_s`` for an update when there is none. Each item is an InboundMessage or,
  for an update that is malformed or not a text message, a SkippedUpdate naming why (its
  update_id, so the cursor can pass it). An update without an id cannot be passed and is
  dropped (counted by the adapter). Raises PollConflict when another poller took over
  (HTTP 409; WebhookActive when a webhook is set, so getUpdates cannot work at all),
  ChannelError when the channel cannot be asked (unreachable, timeout, 5xx).
- ``send(reply)`` delivers one reply. Returns a SendOutcome: ``accepted`` (delivered
  now), ``repeat`` (a fencing sink already had this reply key: the original message id
  is returned, nothing is delivered twice) or ``stale`` (a fencing sink has seen a
  higher epoch and refused it). Raises ChannelError when the outcome is unknown
  (timeout, connection lost after the request went out, 5xx): the reply may or may not
  have been delivered; NotDelivered when it surely was not and may be sent again
  (the connection was refused; RateLimited: 429, wait ``retry_after_s`` first);
  ChannelRejected when the channel refused it for good (chat or thread not found, bad
  text): nothing was delivered.
- ``delivered(reply_key)`` -> True/False from a sink that can say, None from one that
  cannot (Telegram). Raises ChannelError when it cannot be asked.
- ``post_user_message(topic, text, client_id)`` posts a message as the user into a
  topic (by name) and returns its message id; the same client_id twice posts once.
  Only the bundled service can (Telegram raises ChannelUnsupported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from baton.core.errors import BatonError
from baton.core.inbound import InboundMessage

__all__ = [
    "MAX_REPLY_UNITS",
    "MAX_TEXT_BYTES",
    "Channel",
    "ChannelError",
    "ChannelRejected",
    "ChannelUnsupported",
    "InboundMessage",
    "NotDelivered",
    "OutboundReply",
    "PollConflict",
    "RateLimited",
    "SendOutcome",
    "SkippedUpdate",
    "Update",
    "WebhookActive",
]

#: Texts longer than this (in UTF-8 bytes) are not given to the agent; they are
#: answered with an error reply instead (baton.core.ledger decides).
MAX_TEXT_BYTES = 64 * 1024

#: The longest message a Bot API sink takes, in UTF-16 code units (Telegram's 4096):
#: a longer reply is split into parts before it is prepared (baton.core.delivery).
MAX_REPLY_UNITS = 4096


class ChannelError(BatonError):
    """The channel could not be asked, or did not say what happened."""

    code = "channel_error"


class PollConflict(ChannelError):
    """Another poller took over this bot's updates (HTTP 409)."""

    code = "poll_conflict"


class WebhookActive(PollConflict):
    """The bot has a webhook set, so getUpdates cannot be used until it is deleted."""

    code = "webhook_active"


class NotDelivered(ChannelError):
    """The request surely did not deliver anything (the connection was refused before it
    went out, or the channel asked us to slow down): sending again is safe."""

    code = "not_delivered"


class RateLimited(NotDelivered):
    """HTTP 429: nothing was delivered; try again after ``retry_after_s`` seconds."""

    code = "rate_limited"

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class ChannelRejected(ChannelError):
    """The channel refused this request for good (HTTP 4xx other than 409 and 429):
    nothing was delivered, and sending it again would be refused again."""

    code = "channel_rejected"


class ChannelUnsupported(ChannelError):
    """This channel cannot do that."""

    code = "channel_unsupported"


@dataclass(frozen=True)
class SkippedUpdate:
    """An update the cursor must pass but that carries nothing to answer."""

    update_id: int
    reason: str  # e.g. "no message", "not text", "malformed"


Update = InboundMessage | SkippedUpdate


@dataclass(frozen=True)
class OutboundReply:
    """One reply to send; ``epoch`` and ``reply_key`` fence it at a capable sink."""

    chat_id: int
    thread_id: int
    reply_to: int  # the message_id answered
    text: str
    epoch: int
    reply_key: str  # sha256 hex, see baton.core.ledger.reply_key


@dataclass(frozen=True)
class SendOutcome:
    status: Literal["accepted", "repeat", "stale"]
    message_id: int | None = None  # the delivered message (accepted, repeat)
    highest_epoch: int | None = None  # stale: the epoch the sink has seen


class Channel(Protocol):
    name: str  # "local", "telegram" or "memory": the first part of ledger keys

    def poll(self, offset: int | None, timeout_s: float) -> list[Update]: ...

    def send(self, reply: OutboundReply) -> SendOutcome: ...

    def delivered(self, reply_key: str) -> bool | None: ...

    def post_user_message(self, topic: str, text: str, client_id: str) -> int: ...

    def check(self, timeout_s: float) -> str:
        """Is the channel there and usable for polling (`baton doctor`)? What it found;
        ChannelError saying what is wrong."""
        ...
