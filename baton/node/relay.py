"""Relay: one kind of news for the parts of a node, built before they are wired.

The node builds its parts, then wires them (baton.node.root): a part is built with a
relay as its listener, and the parts that hear that news follow the relay later, in
the wiring step or (the registry) after it. A relay keeps the latest news and tells it
at once to a listener added late, then every later one, in order. Without it, news
told while the node was still starting never reached the parts wired after it: on a
loaded host a standby learned who holds before its delivery ran, so its live tail
refused the holder's stream (a wakeup could never catch up) and its delivery could not
forward a `baton send`, until the lease next changed.

Invariants:
- A listener gets the latest news when added (if there was any), then each later
  one exactly once, in the order told; none twice, none lost, even while news arrives
  from another thread.
- One listener's failure (a part that is stopping) keeps no other uninformed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pykka

T = TypeVar("T")


class Relay(Generic[T]):
    def __init__(self, what: str) -> None:
        self.log = logging.getLogger(f"baton.{what}")  # "lease": baton.lease, ...
        self._lock = threading.Lock()  # news is never told between an add and its replay
        self._last: T | None = None
        self._listeners: list[Callable[[T], None]] = []

    def __call__(self, news: T) -> None:
        with self._lock:
            self._last = news
            for listener in self._listeners:
                self._tell(listener, news)

    def add(self, listener: Callable[[T], None]) -> None:
        with self._lock:
            self._listeners.append(listener)
            if self._last is not None:
                self._tell(listener, self._last)

    def follow(self, *actors: pykka.ActorRef[Any]) -> None:
        """Each of ``actors`` is told every piece of news, as it is."""
        for actor in actors:
            self.add(functools.partial(_tell_actor, actor))

    def _tell(self, listener: Callable[[T], None], news: T) -> None:
        try:
            listener(news)
        except Exception:  # one listener's trouble must not keep the others uninformed
            self.log.exception("a listener failed on %s", news)


def _tell_actor(actor: pykka.ActorRef[Any], news: object) -> None:
    with contextlib.suppress(pykka.ActorDeadError):  # the node is stopping
        actor.tell(news)
