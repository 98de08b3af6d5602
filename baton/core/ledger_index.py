"""LedgerIndex: what the delivery machine holds of its ledger (sans-IO).

The ledger on disk is the truth; the delivery machine is its one writer, so it keeps
every pending entry in memory (equal to ``MessageProcessingLedger.pending()``, read once
at start) and decides on that, each of its steps a ``Persist`` effect its shell carries
out in order. It spares a scan of every pending entry (and a JSON decode of each) per step: with a
backlog of n messages that scan made delivery quadratic.

It also keeps the entries acked while the channel may still deliver their update again
(``redeliverable``: its update id is at or above the cursor's offset, which stays at the
lowest pending update), so a standby that joins the in-sync set learns them too: else,
holding later, it would answer them again. They leave once the cursor passes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from baton.core.delivery_types import Effect, LedgerOp, Persist
from baton.core.ledger import LedgerEntry, LedgerState, pending_order


class LedgerIndex:
    def __init__(self, pending: Iterable[LedgerEntry] = ()) -> None:
        self.index: dict[str, LedgerEntry] = {e.key: e for e in pending}
        self.redeliverable: dict[str, LedgerEntry] = {}

    def keep(self, entry: LedgerEntry) -> LedgerEntry:
        if entry.state is LedgerState.ACKED:
            self.index.pop(entry.key, None)
            if entry.update_id is not None:
                self.redeliverable[entry.key] = entry
        else:
            self.index[entry.key] = entry
        return entry

    def step(self, out: list[Effect], op: LedgerOp, entry: LedgerEntry, *args: Any) -> LedgerEntry:
        """``entry`` is what ledger step ``op`` (the port's method, with ``args``) makes
        of its key: kept here, and persisted before any effect appended after it (not
        at all if the step was taken already: the rules return the entry unchanged)."""
        if self.index.get(entry.key) is not entry:
            out.append(Persist(op, entry, args))
        return self.keep(entry)

    def passed(self, offset: int | None) -> None:
        """The channel confirms every update below ``offset``: they come no more."""
        if offset is None:
            return
        for key in [k for k, e in self.redeliverable.items() if (e.update_id or 0) < offset]:
            del self.redeliverable[key]

    def pending(self) -> list[LedgerEntry]:
        """As MessageProcessingLedger.pending(): every entry not acked, in the same order."""
        return sorted(self.index.values(), key=pending_order)

    def reload(self, pending: Iterable[LedgerEntry]) -> None:
        self.index = {e.key: e for e in pending}
