"""IndexedLedger: the ledger plus an in-memory index of its pending entries.

The DeliveryActor is the ledger's one owner, and every change goes through here, so the
index stays equal to ``ledger.pending()`` (loaded once at start). It spares the actor a
scan of every pending entry (and a JSON decode of each) on every step it takes: with a
backlog of n messages that scan made delivery quadratic. Reads of what is not pending,
the queue and retention go straight to the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from baton.core.inbound import InboundMessage
from baton.core.ledger import Ledger, LedgerEntry, LedgerState, ReplyMarker, pending_order


class IndexedLedger:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.index: dict[str, LedgerEntry] = {e.key: e for e in ledger.pending()}

    def _keep(self, entry: LedgerEntry) -> LedgerEntry:
        if entry.state is LedgerState.ACKED:
            self.index.pop(entry.key, None)
        else:
            self.index[entry.key] = entry
        return entry

    def pending(self) -> list[LedgerEntry]:
        """As Ledger.pending(): every entry not acked, in the same order."""
        return sorted(self.index.values(), key=pending_order)

    def get(self, key: str) -> LedgerEntry | None:
        found = self.index.get(key)
        return found if found is not None else self.ledger.get(key)

    def record(self, msg: InboundMessage, now_ms: float) -> tuple[LedgerEntry, bool]:
        if msg.key in self.index:
            return self.index[msg.key], False
        entry, new = self.ledger.record(msg, now_ms)
        self._keep(entry)
        return entry, new

    def begin(self, key: str, now_ms: float) -> LedgerEntry:
        return self._keep(self.ledger.begin(key, now_ms))

    def fail(self, key: str, error: str, now_ms: float) -> LedgerEntry:
        return self._keep(self.ledger.fail(key, error, now_ms))

    def prepare(self, key: str, replies: Sequence[str], epoch: int, now_ms: float) -> LedgerEntry:
        return self._keep(self.ledger.prepare(key, replies, epoch, now_ms))

    def commit(
        self, key: str, index: int, message_id: int | None, epoch: int, now_ms: float
    ) -> LedgerEntry:
        return self._keep(self.ledger.commit(key, index, message_id, epoch, now_ms))

    def ack(self, key: str, now_ms: float) -> LedgerEntry:
        return self._keep(self.ledger.ack(key, now_ms))

    def apply_marker(self, marker: ReplyMarker, now_ms: float) -> LedgerEntry:
        return self._keep(self.ledger.apply_marker(marker, now_ms))

    def __getattr__(self, name: str) -> Any:  # counts, prune, queue_*, close
        return getattr(self.ledger, name)
