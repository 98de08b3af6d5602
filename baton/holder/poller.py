"""ChannelPoller: the one thread that calls the channel's getUpdates, and only while this
machine holds the lease (it asks the LeaseGate right before every poll, so a standby
never polls). What it gets goes to the DeliveryActor as Polled, with the epoch it was
polled under, even when it is nothing (a new term works only on what its own polls
have covered: an empty poll covers all); the actor publishes the
offset to poll with in a Cursor (the lowest update still pending: the channel confirms
nothing that is not done).

While nothing is pending it long-polls (at most a third of the ttl, so a poll never
outlives the lease by much); while messages are in flight the channel would answer at
once with the same updates, so it polls again only after progress (the cursor moved)
or 200 ms. Errors back off from 0.5 s to 5 s; a 409 (another poller took over) is
counted and waited out the same way; a 429 waits the ``retry_after`` the channel
asked for. A webhook set on the bot (getUpdates answers 409 until it is deleted), a
429 and a conflict are kept as the cursor's ``problem`` while they last, for status to raise an
alarm: the operator must act on a webhook, nothing baton does will end it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import pykka

from baton.adapters.metrics import Counters
from baton.channels.base import (
    Channel,
    ChannelError,
    PollConflict,
    RateLimited,
    Update,
    WebhookActive,
)
from baton.core.clock import Clock
from baton.holder.gate import LeaseGate

log = logging.getLogger("baton.poller")

BUSY_POLL_S = 0.2
IDLE_WAIT_S = 0.2


class Cursor:
    """The offset to poll with and whether anything is pending (thread-safe); and the
    poller's lasting problem, if any (``problem``: webhook_active, rate_limited,
    conflict), which the DeliveryActor shows as an alarm."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset: int | None = None
        self._pending = False
        self.progress = threading.Event()
        self.problem: str | None = None  # a plain attribute: one writer, the poller

    def publish(self, offset: int | None, pending: bool) -> None:
        with self._lock:
            moved = offset != self._offset
            self._offset, self._pending = offset, pending
        if moved:
            self.progress.set()

    def read(self) -> tuple[int | None, bool]:
        with self._lock:
            return self._offset, self._pending


class ChannelPoller:
    def __init__(
        self,
        channel: Channel,
        *,
        gate: LeaseGate,
        clock: Clock,
        cursor: Cursor,
        deliver: Callable[[tuple[Update, ...], int], Any],
        counters: Counters,
        long_poll_s: float,
    ) -> None:
        self.channel = channel
        self.gate = gate
        self.clock = clock
        self.cursor = cursor
        self.deliver = deliver
        self.counters = counters
        self.long_poll_s = max(0.0, long_poll_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="baton-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.cursor.progress.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            epoch = self.gate.current(self.clock.monotonic_ms())
            if epoch is None:
                self.gate.wait_change(IDLE_WAIT_S)
                continue
            offset, pending = self.cursor.read()
            self.cursor.progress.clear()
            wait = backoff
            try:
                self.counters.inc("poll.calls")
                updates = self.channel.poll(offset, 0 if pending else self.long_poll_s)
            except WebhookActive as exc:
                self._failed("webhook_active", exc.detail)
            except PollConflict as exc:
                self._failed("conflict", exc.detail)
            except RateLimited as exc:
                self._failed("rate_limited", exc.detail)
                wait = max(backoff, exc.retry_after_s)
            except ChannelError as exc:
                self._failed("failed", exc.detail)
            else:
                self.cursor.problem = None
                backoff = 0.5
                if updates:
                    self.counters.inc("poll.updates", len(updates))  # per update, not per poll
                with contextlib.suppress(pykka.ActorDeadError):  # nothing new says something
                    self.deliver(tuple(updates), epoch)  # too: a new term may go on
                if pending or updates:
                    self.cursor.progress.wait(BUSY_POLL_S)
                continue
            self._stop.wait(wait)
            backoff = min(5.0, backoff * 2)

    def _failed(self, kind: str, detail: str) -> None:
        """Count every failure; log a lasting problem once when it starts (it would
        otherwise log every 5 s for as long as a webhook stays set)."""
        self.counters.inc(f"poll.{kind}")
        if kind == "failed":
            log.warning("poll failed: %s", detail)
        elif self.cursor.problem != kind:
            self.cursor.problem = kind
            log.warning("poll: %s", detail)
