"""LeaseGate: the one question every side effect asks first: "may I act, and with which
epoch?" The LeaseCoordinatorActor publishes after every step (the answer, and the lease
as this machine knows it); anyone may ask from any thread. The answer is an epoch only
while this machine holds the lease and its local deadline (CLOCK_BOOTTIME ms) has not
passed, so a holder paused past its deadline gets None the moment it wakes, before it
can act. Whatever it still had in flight carries its old epoch, and a fencing sink
refuses it."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseView:
    """The lease as this machine knows it: who holds which epoch, from which local ms a
    standby may take it over (None: at once; nobody holds), which standbys are in sync
    (on the holder: every one the store may name, ``core.lease.may_name``; on a
    standby: the known record's set), and whether this machine may take the lease over
    by itself."""

    holder: str | None = None
    epoch: int = 0
    takeover_at: float | None = None
    in_sync: tuple[str, ...] = ()
    may_take_over: bool = True


class LeaseGate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._epoch: int | None = None
        self._deadline = 0.0
        self._view = LeaseView()

    def publish_view(self, view: LeaseView) -> None:
        with self._lock:
            self._view = view

    def view(self) -> LeaseView:
        with self._lock:
            return self._view

    def publish(self, epoch: int | None, deadline: float | None) -> None:
        with self._lock:
            before = self._epoch
            self._epoch = epoch if deadline is not None else None
            self._deadline = deadline or 0.0
            if self._epoch != before:
                self._changed.notify_all()

    def wait_change(self, timeout_s: float) -> None:
        """Wait until the published epoch changes, at most ``timeout_s`` (a poller that
        may not act sleeps here, and starts the moment this machine holds)."""
        with self._lock:
            self._changed.wait(timeout_s)

    def current(self, now_ms: float) -> int | None:
        """The epoch to act with now, or None: do not act."""
        with self._lock:
            return self._epoch if self._epoch is not None and now_ms < self._deadline else None
