"""Messages of the DeliveryActor (frozen; results of blocking work done elsewhere)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from baton.channels.base import SendOutcome, Update


@dataclass(frozen=True)
class Polled:
    updates: tuple[Update, ...]
    epoch: int | None = None  # the term it was polled under (the poller says)


@dataclass(frozen=True)
class AgentDone:
    token: int  # the job's: a result is the actor's only if it still waits on that token
    key: str
    replies: tuple[str, ...] | None
    error: str | None = None


@dataclass(frozen=True)
class SendDone:
    token: int
    key: str
    index: int
    epoch: int | None
    outcome: SendOutcome | None
    error: str | None = None  # "not_holder" or the channel's detail (outcome unknown)
    not_delivered: bool = False  # the error says nothing was delivered: send again
    retry_after_ms: float = 0.0  # not before this long (the channel's 429 retry_after)


@dataclass(frozen=True)
class CheckDone:
    token: int
    key: str
    index: int
    delivered: bool | None
    error: str | None = None


@dataclass(frozen=True)
class PostDone:
    item_id: str
    message_id: int | None
    error: str | None = None


@dataclass(frozen=True)
class QueueUserMessage:
    """Post ``text`` into ``topic`` as the user (``baton send``); answers the item id."""

    topic: str
    text: str


@dataclass(frozen=True)
class GetUserMessage:
    item_id: str


@dataclass(frozen=True)
class GetDelivery:
    pass


@dataclass(frozen=True)
class ApplyMarkers:
    """The reply markers that came since the first of them: applied as one group."""


@dataclass(frozen=True)
class StopIngress:
    """DeliveryActor: take no new messages, start no agent run; call ``reply()`` once
    every reply in flight is delivered and recorded."""

    reply: Callable[[], None]


@dataclass(frozen=True)
class ResumeIngress:
    """DeliveryActor: the handoff was called off; take messages again."""
