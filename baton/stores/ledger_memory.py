"""MemoryLedger: the MessageProcessingLedger port in memory, the twin of SqliteLedger
(tests, simulations).

Invariants:
- One lock makes every call atomic; a call that raises changed nothing (entries are
  frozen values and are replaced only after the pure transition returned); a batch
  that raises changed nothing either (what it held is put back).
- The rules are those of baton.core.ledger and baton.core.ledger_marker, nothing more;
  both adapters pass tests/contract/test_ledger.py.
- Nothing survives the process (that is the only difference from SqliteLedger).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Concatenate, ParamSpec

from baton.core import ledger as rules
from baton.core.errors import LedgerError, UnknownEntry
from baton.core.inbound import InboundMessage
from baton.core.ledger import (
    LedgerEntry,
    LedgerState,
    QueuedMessage,
    ReplyMarker,
    apply_marker,
)
from baton.stores.ledger_steps import LedgerSteps

P = ParamSpec("P")


class MemoryLedger(LedgerSteps):
    def __init__(self) -> None:
        self._lock = threading.RLock()  # a batch holds it around the calls in it
        self._entries: dict[str, LedgerEntry] = {}
        self._queue: dict[str, tuple[int, QueuedMessage]] = {}
        self._seq = 0
        self._closed = False

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The calls in the block as one: when it raises, none of them changed anything."""
        with self._lock:
            saved = dict(self._entries), dict(self._queue), self._seq
            try:
                yield
            except BaseException:
                self._entries, self._queue, self._seq = saved[0], saved[1], saved[2]
                raise

    def _open(self) -> None:
        if self._closed:
            raise LedgerError("the memory ledger is closed")

    def _advance(
        self,
        key: str,
        step: Callable[Concatenate[LedgerEntry, P], LedgerEntry],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> LedgerEntry:
        with self._lock:
            self._open()
            entry = self._entries.get(key)
            if entry is None:
                raise UnknownEntry(f"no ledger entry {key!r}")
            entry = step(entry, *args, **kwargs)
            self._entries[key] = entry
            return entry

    def record(self, msg: InboundMessage, now_ms: float) -> tuple[LedgerEntry, bool]:
        with self._lock:
            self._open()
            found = self._entries.get(msg.key)
            if found is not None:
                return found, False
            entry = self._entries[msg.key] = LedgerEntry.of(msg, now_ms)
            return entry, True

    def get(self, key: str) -> LedgerEntry | None:
        with self._lock:
            self._open()
            return self._entries.get(key)

    def apply_marker(self, marker: ReplyMarker, now_ms: float) -> LedgerEntry:
        with self._lock:
            self._open()
            entry = apply_marker(self._entries.get(marker.key), marker, now_ms)
            self._entries[marker.key] = entry
            return entry

    def pending(self) -> list[LedgerEntry]:
        with self._lock:
            self._open()
            waiting = [e for e in self._entries.values() if not e.done]
        return sorted(waiting, key=rules.pending_order)

    def prune(self, now_ms: float, max_age_ms: float, max_entries: int) -> int:
        with self._lock:
            self._open()
            acked = sorted(
                (e for e in self._entries.values() if e.done), key=lambda e: (e.updated_ms, e.key)
            )
            old = [e for e in acked if e.updated_ms < now_ms - max_age_ms]
            excess = max(0, len(self._entries) - len(old) - max(0, max_entries))
            victims = old + acked[len(old) : len(old) + excess]
            for e in victims:
                del self._entries[e.key]
            return len(victims)

    def counts(self) -> dict[str, int]:
        with self._lock:
            self._open()
            counts = {state.value: 0 for state in LedgerState}
            for e in self._entries.values():
                counts[e.state.value] += 1
            return counts

    def queue_put(self, item_id: str, topic: str, text: str, now_ms: float) -> bool:
        rules.check_text(item_id=item_id, topic=topic, text=text)
        with self._lock:
            self._open()
            if item_id in self._queue:
                return False
            self._seq += 1
            self._queue[item_id] = (self._seq, QueuedMessage(item_id, topic, text, now_ms))
            return True

    def queue_items(self) -> list[QueuedMessage]:
        with self._lock:
            self._open()
            items = sorted(self._queue.values(), key=lambda q: (q[1].queued_ms, q[0]))
        return [item for _, item in items]

    def queue_remove(self, item_id: str) -> None:
        with self._lock:
            self._open()
            self._queue.pop(item_id, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
