"""MemoryPoolStore: the TopicPlacementPinStore port in memory, the twin of SqlitePoolStore
(tests, simulations). Both pass tests/contract/test_pool_store.py.

Invariants: one lock makes every call atomic; the state is a frozen value, replaced only
by a newer one (baton.core.pool_state.newer). Nothing survives the process.
"""

from __future__ import annotations

import threading

from baton.core.errors import PoolError
from baton.core.pool_state import PoolState, newer


class MemoryPoolStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = PoolState()
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise PoolError("the memory pool store is closed")

    def load(self) -> PoolState:
        with self._lock:
            self._open()
            return self._state

    def keep(self, state: PoolState) -> bool:
        with self._lock:
            self._open()
            if not newer(state, self._state):
                return False
            self._state = state
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __repr__(self) -> str:
        return "MemoryPoolStore()"
