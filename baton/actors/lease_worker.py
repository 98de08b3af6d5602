"""LeaseStoreWorker: the one thread that talks to the lease store.

Store calls block (a git push may take a while, or time out), and the coordinator must
keep its deadline while they do, so they run here: the coordinator submits a write and
goes on; the answer comes back as a StoreDone message. One write at a time, in order.
The store (and its private git repository) is owned by this thread alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import pykka

from baton.core.errors import LeaseStoreError
from baton.core.lease import Attempt
from baton.core.lease_store import CasResult, LeaseStore

log = logging.getLogger("baton.lease")


@dataclass(frozen=True)
class StoreDone:
    """The store's answer to ``attempt``: a result, or why it could not be asked."""

    attempt: Attempt
    result: CasResult | None
    error: str | None


class LeaseStoreWorker:
    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self._jobs: queue.Queue[tuple[Attempt, pykka.ActorRef[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="baton-lease-store", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, attempt: Attempt, reply_to: pykka.ActorRef[Any]) -> None:
        self._jobs.put((attempt, reply_to))

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        close = getattr(self.store, "close", None)
        if close is not None and not self._thread.is_alive():
            close()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            attempt, reply_to = job
            try:
                if attempt.kind == "read":  # what the store holds, writing nothing
                    result = CasResult(False, self.store.read())
                else:
                    result = self.store.cas(attempt.expected, attempt.record)
                done = StoreDone(attempt, result, None)
            except LeaseStoreError as exc:
                done = StoreDone(attempt, None, exc.detail)
            except Exception as exc:  # a bug in an adapter must not end the lease silently
                log.exception("lease store %s failed", self.store.describe())
                done = StoreDone(attempt, None, f"{type(exc).__name__}: {exc}")
            try:
                reply_to.tell(done)
            except pykka.ActorDeadError:
                log.debug("lease: the coordinator is gone; %s answer dropped", attempt.kind)
