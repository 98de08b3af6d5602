"""The LeaseStore port: the shared medium that decides who holds the lease.

Contract (every adapter passes tests/contract/test_lease_store.py):

- ``read() -> Stored``: what the store holds now. ``Stored.token`` is the store's
  version of it (None when nothing was ever stored); ``Stored.record`` is the decoded
  record, or None with ``Stored.problem`` saying why when the stored bytes are not a
  lease record (garbage is reported, never raised and never guessed at).
- ``cas(expected, new) -> CasResult``: atomically replace what the store holds with
  ``new`` if and only if its token is still ``expected`` (None: only if nothing is
  stored). ``ok`` says whether it did; ``current`` is what the store holds after the
  call (``new`` with its token on success; the record that won on failure). The store
  decides, not the caller: two racing CAS from one token, exactly one succeeds.
- Both raise LeaseStoreError when the store cannot be asked (unreachable, slow past the
  adapter's timeout, refused credentials). For cas that means the outcome is unknown:
  the write may or may not have landed. A lost CAS is never reported as an error, and
  an error is never reported as a lost CAS.
- Tokens are opaque strings (a git commit id, an etcd mod_revision, a counter); one
  token always names the same stored bytes. Callers compare them, never parse them.
- Writing does not grow the store without bound: a renewal replaces the record.
- ``describe()`` names the store for people (no secrets in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from baton.core.errors import MalformedLease
from baton.core.lease_record import LeaseRecord


@dataclass(frozen=True)
class Stored:
    """What a lease store holds: a record, garbage, or nothing."""

    token: str | None
    record: LeaseRecord | None = None
    problem: str | None = None  # why the stored bytes are not a record

    @property
    def empty(self) -> bool:
        return self.token is None


@dataclass(frozen=True)
class CasResult:
    ok: bool
    current: Stored


def decode_stored(token: str, data: bytes) -> Stored:
    """What ``data`` under ``token`` is: a record, or garbage with the reason."""
    try:
        return Stored(token, LeaseRecord.decode(data))
    except MalformedLease as exc:
        return Stored(token, None, exc.detail)


class LeaseStore(Protocol):
    def read(self) -> Stored: ...

    def cas(self, expected: str | None, new: LeaseRecord) -> CasResult: ...

    def describe(self) -> str: ...
