"""Messages of the HandoffActor. Its answers, and those of the actors it drives, come
back through ``reply`` callables or futures that only tell (no actor ever waits on
another)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Wakeup:
    """HandoffActor: make this machine awake (``baton wakeup``); the answer (a dict, see
    HandoffActor) is set on ``answer``."""

    force: bool
    answer: Future[dict[str, Any]]


@dataclass(frozen=True)
class GetHandoff:
    """HandoffActor: its view for status."""
