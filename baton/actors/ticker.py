"""Ticker: the one thread that tells Tick(now_ms) to the actors that asked for time.

It reads the clock, so actors don't; a test drives actors with Tick messages
instead. Stopping is a flag plus an event, so stop() returns within one tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pykka

from baton.actors.messages import Tick
from baton.core.clock import Clock

log = logging.getLogger("baton.ticker")


class Ticker:
    def __init__(
        self, clock: Clock, subscribers: Sequence[pykka.ActorRef[Any]], tick_ms: float
    ) -> None:
        self.clock = clock
        self.subscribers = list(subscribers)
        self.tick_s = tick_ms / 1000.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="baton-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            tick = Tick(self.clock.monotonic_ms())
            for ref in self.subscribers:
                try:
                    ref.tell(tick)
                except pykka.ActorDeadError:
                    log.debug("ticker: %r is gone", ref)
