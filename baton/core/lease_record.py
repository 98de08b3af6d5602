"""The lease record, its canonical signed encoding, and the checks a record must pass.

A record says "machine H holds the lease at epoch E": ``{holder, epoch, nonce, ttl_ms,
issued_at, in_sync, signature}``, signed by H's Ed25519 key over ``signable()``.
``in_sync`` names the standbys that hold every reply marker H has sent (Patroni's
synchronous set): only they (and H itself) may take the lease over automatically.

Invariants:
- Pure: no I/O, no clock. The Ed25519 check is the Verify port of core.registry.
- A LeaseRecord that exists is well-formed: holder is a machine id, epoch >= 1,
  nonce >= 0, 0 <= ttl_ms <= MAX_TTL_MS, issued_at finite. Decoding a peer's dict
  yields one or raises MalformedLease naming the field.
- (epoch, nonce) orders the records of one holder: a renewal keeps the epoch and
  adds one to the nonce; an acquisition starts a new epoch at nonce 0.
- ttl_ms == 0 is a release (a tombstone): the holder gave the lease up, and a standby
  may acquire at once.
- issued_at is the holder's wall clock, for people to read. Nothing compares it.
- in_sync is a sorted tuple of distinct machine ids without the holder, at most
  MAX_IN_SYNC. An empty set is left out of the encoding (and of what is signed), so a
  record without the field reads as one with nobody in sync.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from baton.core import safejson
from baton.core.errors import ForgedLease, LeaseFromStranger, MalformedLease
from baton.core.registry import Signer, Verify
from baton.core.settings import MAX_TTL_MS
from baton.core.signatures import signable

SIGNING_CONTEXT = b"baton lease record v1\n"
MAX_COUNTER = 2**53  # JSON-safe integers; an epoch or nonce this big is a forgery
MAX_IN_SYNC = 64  # standbys named in one record
_MACHINE_ID_RE = re.compile(r"m_[a-z2-7]{16}")


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    epoch: int
    nonce: int
    ttl_ms: int
    issued_at: float
    signature: bytes | None = None
    in_sync: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.holder, str) or not _MACHINE_ID_RE.fullmatch(self.holder):
            raise MalformedLease("holder: expected a machine id")
        for name, low, high in (
            ("epoch", 1, MAX_COUNTER),
            ("nonce", 0, MAX_COUNTER),
            ("ttl_ms", 0, MAX_TTL_MS),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise MalformedLease(f"{name}: expected an integer in [{low}, {high}]")
        issued = self.issued_at
        if isinstance(issued, bool) or not isinstance(issued, int | float):
            raise MalformedLease("issued_at: expected a number")
        if not math.isfinite(float(issued)):
            raise MalformedLease("issued_at: expected a finite number")
        object.__setattr__(self, "issued_at", float(issued))
        if self.signature is not None and (
            not isinstance(self.signature, bytes) or len(self.signature) != 64
        ):
            raise MalformedLease("signature: expected 64 bytes")
        members = self.in_sync
        if (
            not isinstance(members, tuple)
            or len(members) > MAX_IN_SYNC
            or not all(isinstance(m, str) and _MACHINE_ID_RE.fullmatch(m) for m in members)
            or list(members) != sorted(set(members))
            or self.holder in members
        ):
            raise MalformedLease(
                f"in_sync: expected at most {MAX_IN_SYNC} sorted, distinct machine ids "
                "other than the holder"
            )

    def may_take_over(self, machine_id: str) -> bool:
        """May ``machine_id`` acquire after this record (expired or released) without
        being handed the lease: the holder itself, or a standby in its in-sync set."""
        return machine_id == self.holder or machine_id in self.in_sync

    @property
    def released(self) -> bool:
        """A tombstone: the holder gave the lease up."""
        return self.ttl_ms == 0

    @property
    def order(self) -> tuple[int, int]:
        return (self.epoch, self.nonce)

    def signable(self) -> bytes:
        return signable(SIGNING_CONTEXT, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "holder": self.holder,
            "epoch": self.epoch,
            "nonce": self.nonce,
            "ttl_ms": self.ttl_ms,
            "issued_at": self.issued_at,
            "signature": None if self.signature is None else b64encode(self.signature).decode(),
        }
        if self.in_sync:
            doc["in_sync"] = list(self.in_sync)
        return doc

    @classmethod
    def from_dict(cls, data: object) -> LeaseRecord:
        """Strict: exactly the fields of to_dict (in_sync may be absent: nobody in sync);
        else MalformedLease."""
        if not isinstance(data, Mapping):
            raise MalformedLease("a lease record is a JSON object")
        names = {f.name for f in fields(cls)}
        if set(data) | {"in_sync"} != names:
            raise MalformedLease(f"a lease record has exactly the fields {sorted(names)}")
        in_sync = data.get("in_sync", [])
        if not isinstance(in_sync, list) or (not in_sync and "in_sync" in data):
            raise MalformedLease("in_sync: expected a non-empty list when present")
        signature = data["signature"]
        if signature is not None:
            if not isinstance(signature, str):
                raise MalformedLease("signature: expected base64 text")
            try:
                signature = b64decode(signature, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedLease("signature: not base64") from None
        return cls(**{**data, "signature": signature, "in_sync": tuple(in_sync)})

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> LeaseRecord:
        try:
            doc = safejson.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise MalformedLease("a lease record is JSON") from None
        return cls.from_dict(doc)

    def __repr__(self) -> str:
        kind = "released" if self.released else f"ttl={self.ttl_ms}"
        return f"LeaseRecord({self.holder} e{self.epoch}.{self.nonce} {kind})"


def sign_record(record: LeaseRecord, signer: Signer) -> LeaseRecord:
    if signer.machine_id != record.holder:
        raise ValueError(f"{signer.machine_id} cannot sign a lease held by {record.holder}")
    unsigned = replace(record, signature=None)
    return replace(unsigned, signature=signer.sign(unsigned.signable()))


def check_record(record: LeaseRecord, members: Mapping[str, bytes], verify: Verify) -> None:
    """Raise unless ``record`` is signed by its holder, an active member.

    ``members`` maps each active member's machine id (this machine included) to its
    Ed25519 public key; a revoked or unknown holder is a LeaseFromStranger.
    """
    public = members.get(record.holder)
    if public is None:
        raise LeaseFromStranger(f"{record.holder} is not an active member")
    if record.signature is None:
        raise ForgedLease(f"the record of {record.holder} is not signed")
    if not verify(public, record.signable(), record.signature):
        raise ForgedLease(f"the record of {record.holder} is not signed by its key")
