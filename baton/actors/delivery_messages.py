"""Messages of the DeliveryActor (frozen; results of blocking work done elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass

from baton.channels.base import SendOutcome, Update


@dataclass(frozen=True)
class Polled:
    updates: tuple[Update, ...]


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
class HolderIs:
    """Who holds the lease now (None: nobody known), from the lease's listener."""

    machine_id: str | None


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
