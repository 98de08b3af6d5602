"""InboundMessage: one inbound message (what a person wrote in a topic of the channel),
as a plain value (the channel adapters in baton.channels make them; the ledger in
baton.core.ledger keys on them).

Invariants:
- ``kind`` is one of MESSAGE_KINDS (else ValueError: our own misuse). The ledger and the
  markers store it and refuse any other value.
- ``text`` is what a person wrote: the message's text, else its caption, else a
  sticker's emoji, else "" (a photo without a caption, a location).
"""

from __future__ import annotations

from dataclasses import dataclass

# What a message is (Telegram's fields): "other" is a message with none of the others,
# e.g. a location, a contact or a poll.
MESSAGE_KINDS = (
    "text",
    "photo",
    "document",
    "voice",
    "video",
    "audio",
    "animation",
    "sticker",
    "other",
)


@dataclass(frozen=True)
class InboundMessage:
    """One inbound message from the channel (a `baton send` user message becomes one
    once the channel delivers it).

    ``topic`` is ``"<chat_id>/<thread_id>"`` (thread 0 when the chat has no topics):
    unique within the channel. ``text`` is valid Unicode (undecodable input was
    replaced with U+FFFD by the adapter). ``kind`` is one of MESSAGE_KINDS.
    """

    channel: str  # "local" | "telegram" | "memory"
    update_id: int
    chat_id: int
    thread_id: int  # 0 when none
    message_id: int
    text: str
    sender: str
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.kind not in MESSAGE_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(MESSAGE_KINDS)}, not {self.kind!r}")

    @property
    def topic(self) -> str:
        return f"{self.chat_id}/{self.thread_id}"

    @property
    def key(self) -> str:
        """The ledger key: ``channel:topic:message_id``."""
        return f"{self.channel}:{self.topic}:{self.message_id}"
