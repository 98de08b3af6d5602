"""Messages of the LiveTailActor: the delivery machine's turns (core effects, told as
they are), status, and the handoff's asks (answers come back through ``reply``
callables that only tell)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from baton.core.delivery_types import StartAgent as StartAgent
from baton.core.delivery_types import TurnDone as TurnDone
from baton.core.delivery_types import TurnSeen as TurnSeen
from baton.core.handoff import Heads


@dataclass(frozen=True)
class GetTail:
    """The live tail's view for status."""


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
