"""MemoryLeaseStore: the LeaseStore contract in memory, for tests and simulations.

One lock makes every call atomic. Tests can put garbage in it and make it unreachable
(``down``), or make the next writes land but lose their answers (``lose_answers``).
"""

from __future__ import annotations

import hashlib
import threading

from baton.core.errors import LeaseStoreError
from baton.core.lease_record import LeaseRecord
from baton.core.lease_store import CasResult, Stored, decode_stored


class MemoryLeaseStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._version = 0
        self.down = False  # every call raises LeaseStoreError
        self.lose_answers = 0  # the next n writes land, but the caller hears an error
        self.writes = 0

    def _token(self) -> str:
        assert self._data is not None
        digest = hashlib.sha256(self._data).hexdigest()[:16]
        return f"{self._version}-{digest}"

    def _stored(self) -> Stored:
        if self._data is None:
            return Stored(None)
        return decode_stored(self._token(), self._data)

    def read(self) -> Stored:
        with self._lock:
            if self.down:
                raise LeaseStoreError("memory lease store is down")
            return self._stored()

    def cas(self, expected: str | None, new: LeaseRecord) -> CasResult:
        with self._lock:
            if self.down:
                raise LeaseStoreError("memory lease store is down")
            current = None if self._data is None else self._token()
            if current != expected:
                return CasResult(False, self._stored())
            self._data, self._version = new.encode(), self._version + 1
            self.writes += 1
            if self.lose_answers > 0:
                self.lose_answers -= 1
                raise LeaseStoreError("the answer was lost (memory lease store)")
            return CasResult(True, self._stored())

    def put_garbage(self, data: bytes) -> None:
        with self._lock:
            self._data, self._version = data, self._version + 1

    def describe(self) -> str:
        return "memory"
