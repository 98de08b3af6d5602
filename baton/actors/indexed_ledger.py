"""IndexedLedger: the ledger plus an in-memory index of its pending entries.

The DeliveryActor is the ledger's one owner, and every change goes through here, so the
index stays equal to ``ledger.pending()`` (loaded once at start). It spares the actor a
scan of every pending entry (and a JSON decode of each) on every step it takes: with a
backlog of n messages that scan made delivery quadratic. Reads of what is not pending,
the queue and retention go straight to the ledger.

It also keeps the entries acked while the channel may still deliver their update again
(``redeliverable``: its update id is at or above the cursor's offset, which stays at the
lowest pending update), so a standby that joins the in-sync set learns them too: else,
holding later, it would answer them again. They leave once the cursor passes them.
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
        self.redeliverable: dict[str, LedgerEntry] = {}

    def _keep(self, entry: LedgerEntry) -> LedgerEntry:
        if entry.state is LedgerState.ACKED:
            self.index.pop(entry.key, None)
            if entry.update_id is not None:
                self.redeliverable[entry.key] = entry
        else:
            self.index[entry.key] = entry
        return entry

    def passed(self, offset: int | None) -> None:
        """The channel confirms every update below ``offset``: they come no more."""
        if offset is None:
            return
        for key in [k for k, e in self.redeliverable.items() if (e.update_id or 0) < offset]:
            del self.redeliverable[key]

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
        self._keep(entry)  # (an acked one the channel delivered again is redeliverable)
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
