"""LedgerSteps: the ledger's five transitions, written once for every adapter.

Each step loads the entry, applies the pure rule of baton.core.ledger, and stores what
changed, all in one atomic ``_advance`` that the adapter supplies (one lock for the
memory twin, one transaction for SQLite), so which rule each method applies cannot
differ between adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec

from baton.core import ledger as rules
from baton.core.ledger import LedgerEntry

P = ParamSpec("P")


class LedgerSteps:
    def _advance(
        self,
        key: str,
        step: Callable[Concatenate[LedgerEntry, P], LedgerEntry],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> LedgerEntry:
        """Apply ``step`` to entry ``key`` atomically (UnknownEntry if there is none)."""
        raise NotImplementedError

    def begin(self, key: str, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.begin, now_ms)

    def fail(self, key: str, error: str, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.fail, error, now_ms)

    def prepare(self, key: str, replies: Sequence[str], epoch: int, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.prepare, replies, epoch, now_ms)

    def commit(
        self, key: str, index: int, message_id: int | None, epoch: int, now_ms: float
    ) -> LedgerEntry:
        return self._advance(key, rules.commit, index, message_id, epoch, now_ms)

    def ack(self, key: str, now_ms: float) -> LedgerEntry:
        return self._advance(key, rules.ack, now_ms)
