"""Messages of a planned handoff between the HandoffActor and the actors it drives (the
LiveTailActor, the DeliveryActor, the LeaseCoordinatorActor). Answers come back through
``reply`` callables that only tell (no actor ever waits on another)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from baton.core.handoff import Heads


@dataclass(frozen=True)
class TailHeads:
    """LiveTailActor: call ``reply`` with this machine's transcript heads."""

    reply: Callable[[Heads], None]


@dataclass(frozen=True)
class CatchUpTo:
    """LiveTailActor (a standby): call ``reply()`` once the buffer holds ``heads`` (the
    holder's), pulling from ``holder`` until then; give up at local ms ``until``."""

    holder: str
    heads: Heads
    until: float
    reply: Callable[[], None]


@dataclass(frozen=True)
class ConfirmTo:
    """LiveTailActor (the holder): flush to ``peer`` until it confirms every turn, then
    call ``reply()``; give up at local ms ``until``."""

    peer: str
    until: float
    reply: Callable[[], None]


@dataclass(frozen=True)
class StopIngress:
    """DeliveryActor: take no new messages, start no agent run; call ``reply()`` once
    every reply in flight is delivered and recorded."""

    reply: Callable[[], None]


@dataclass(frozen=True)
class ResumeIngress:
    """DeliveryActor: the handoff was called off; take messages again."""


@dataclass(frozen=True)
class Yield:
    """LeaseCoordinatorActor: stop acting now and release the lease to ``to`` alone."""

    to: str


@dataclass(frozen=True)
class Wakeup:
    """HandoffActor: make this machine awake (``baton wakeup``); the answer (a dict, see
    HandoffActor) is set on ``answer``."""

    force: bool
    answer: Future[dict[str, Any]]


@dataclass(frozen=True)
class GetHandoff:
    """HandoffActor: its view for status."""
