"""The agent interface: ``handle(message, history) -> replies``.

An agent is the user's program. baton runs it in worker processes (baton.agents.runner)
so that an agent that crashes, hangs or prints garbage costs one recorded error, never
the node's coordination. Specs (the ``agent`` knob):

- ``echo``: built in; its reply names the number of earlier turns in the topic, so
  continuity across machines is visible: ``echo: <text> (earlier turns: <n>)``; a message
  of another kind is named first: ``echo: [photo] <caption> (earlier turns: <n>)``.
- ``cmd:PROGRAM [ARGS...]``: a subprocess per message (split with shlex); JSON on stdin
  ``{"message": {...}, "history": [...]}``, JSON on stdout ``{"replies": ["..."]}``.
  The message is AgentMessage.to_json(): ``{"topic", "message_id", "text", "sender",
  "kind"}``; history turns are ``{"text", "replies"}``.

Messages: ``kind`` is what the person sent (baton.core.inbound.MESSAGE_KINDS: "text",
"photo", "document", "voice", "video", "audio", "animation", "sticker", "other");
``text`` is the message's text, else its caption, else a sticker's emoji, else "" (a
photo without a caption, a location). Only a text message always has a non-empty text.
- ``python:module:function``: ``function(message, history) -> list[str] | str``.

Replies: 1 to MAX_REPLIES non-empty strings of at most MAX_REPLY_CHARS characters each;
anything else is garbage (AgentFailed with reason "garbage").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from baton.core.errors import BatonError

MAX_REPLIES = 10
MAX_REPLY_CHARS = 16000
STATE_ENV = "AGENT_STATE_DIR"  # where the agent keeps state that follows the awake role


@dataclass(frozen=True)
class AgentMessage:
    topic: str
    message_id: int
    text: str
    sender: str
    kind: str = "text"  # one of baton.core.inbound.MESSAGE_KINDS

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "message_id": self.message_id,
            "text": self.text,
            "sender": self.sender,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class Turn:
    """One earlier exchange in the topic: the user's text and the replies to it."""

    text: str
    replies: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "replies": list(self.replies)}


class Agent(Protocol):
    def handle(self, message: AgentMessage, history: Sequence[Turn]) -> list[str]: ...


class AgentFailed(BatonError):
    """The agent gave no usable answer."""

    code = "agent_failed"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # "crash" | "timeout" | "garbage" | "error"
