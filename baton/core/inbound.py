"""InboundMessage: one user message from a channel, as a plain value (the channel
adapters in baton.channels make them; the ledger in baton.core.ledger keys on them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InboundMessage:
    """One user message from the channel.

    ``topic`` is ``"<chat_id>/<thread_id>"`` (thread 0 when the chat has no topics):
    unique within the channel. ``text`` is valid Unicode (undecodable input was
    replaced with U+FFFD by the adapter).
    """

    channel: str  # "local" | "telegram" | "memory"
    update_id: int
    chat_id: int
    thread_id: int  # 0 when none
    message_id: int
    text: str
    sender: str

    @property
    def topic(self) -> str:
        return f"{self.chat_id}/{self.thread_id}"

    @property
    def key(self) -> str:
        """The ledger key: ``channel:topic:message_id``."""
        return f"{self.channel}:{self.topic}:{self.message_id}"
