"""Endpoint announcements: a machine says where it can be reached. No I/O.

A laptop that moves between networks changes its addresses. An announcement carries the
machine's endpoints in the order to dial them, its HTTP URL and a sequence number that
only grows, signed with the machine's own Ed25519 key. The machine keeps its last
announcement in its own registry entry (so ``seq`` survives a restart) and sends it to
every peer when its endpoints change and every few seconds (RegistryActor); each member
keeps the newest it accepted in that machine's entry, and the awake member's roster
carries it to the others, newest winning there too.

Rules (``accept``): an announcement is believed only
- if it decodes (``MalformedAnnouncement``);
- from the machine it names, an active member, signed by that member's key
  (``ForgedAnnouncement``: a relayed, a foreign-signed or a stranger's one);
- if its ``seq`` is above every one accepted from that machine (``StaleAnnouncement``:
  replayed or overtaken). Newest wins.

An announcement also says which baton the machine runs and which protocol versions it
speaks (``versions``, baton.core.versions), so a restart into another version is
announced at once. One made before versions were announced has none, and its signature
still verifies: its fields are signed as they were.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from baton.core.endpoints import (
    HTTP_RE,
    MAX_ENDPOINTS,
    WILDCARDS,
    WIRE_RE,
    check_endpoint,
    host_port,
)
from baton.core.errors import (
    ForgedAnnouncement,
    InvalidCard,
    MalformedAnnouncement,
    StaleAnnouncement,
)
from baton.core.signatures import Signer, Verify, decode_signature, signable
from baton.core.versions import FIELDS as VERSION_FIELDS
from baton.core.versions import Versions

SIGNING_CONTEXT = b"baton endpoint announcement v1\n"
MAX_SEQ = 2**63 - 1
FIELDS = frozenset({"machine_id", "seq", "wire", "http", "signature"})


@dataclass(frozen=True)
class Announcement:
    machine_id: str
    seq: int
    wire: tuple[str, ...]  # in the order to dial them
    http: str
    signature: bytes | None = None
    versions: Versions | None = None  # None: made before versions were announced

    def signable(self) -> bytes:
        return signable(SIGNING_CONTEXT, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        sig = None if self.signature is None else base64.b64encode(self.signature).decode()
        doc = {
            "machine_id": self.machine_id,
            "seq": self.seq,
            "wire": list(self.wire),
            "http": self.http,
            "signature": sig,
        }
        return doc if self.versions is None else {**doc, **self.versions.to_dict()}

    @classmethod
    def from_dict(cls, doc: object) -> Announcement:
        """The announcement in ``doc``; MalformedAnnouncement naming what is wrong."""
        if not isinstance(doc, Mapping) or set(doc) not in (FIELDS, FIELDS | VERSION_FIELDS):
            raise MalformedAnnouncement(
                f"expected an object with {sorted(FIELDS)}, and {sorted(VERSION_FIELDS)} or not"
            )
        machine_id, seq, wire = doc["machine_id"], doc["seq"], doc["wire"]
        if not isinstance(machine_id, str) or not machine_id:
            raise MalformedAnnouncement("machine_id: expected a string")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_SEQ:
            raise MalformedAnnouncement("seq: expected a positive 64-bit integer")
        if not isinstance(wire, list) or not 0 < len(wire) <= MAX_ENDPOINTS:
            raise MalformedAnnouncement(f"wire: expected 1 to {MAX_ENDPOINTS} endpoints")
        try:
            endpoints = tuple(check_endpoint(w, "wire", WIRE_RE) for w in wire)
            http = check_endpoint(doc["http"], "http", HTTP_RE)
        except InvalidCard as exc:
            raise MalformedAnnouncement(exc.detail) from None
        if any(host_port(w)[0] in WILDCARDS for w in (*endpoints, http)):
            raise MalformedAnnouncement("a wildcard address: a peer would dial itself")
        try:  # None decodes to None: an unsigned announcement is accept()'s to refuse
            signature = decode_signature(doc["signature"])
        except (TypeError, ValueError) as exc:
            raise MalformedAnnouncement(f"signature: {exc}") from None
        try:
            versions = Versions.from_dict(doc) if "version" in doc else None
        except ValueError as exc:
            raise MalformedAnnouncement(str(exc)) from None
        return cls(machine_id, seq, endpoints, http, signature, versions)


def sign_announcement(announcement: Announcement, signer: Signer) -> Announcement:
    if signer.machine_id != announcement.machine_id:
        raise ValueError(f"{signer.machine_id} cannot announce {announcement.machine_id}")
    unsigned = replace(announcement, signature=None)
    return replace(unsigned, signature=signer.sign(unsigned.signable()))


def accept(
    announcement: Announcement,
    sender: str,
    members: Mapping[str, bytes],
    last_seq: Mapping[str, int],
    verify: Verify,
) -> None:
    """Raise unless ``announcement``, which ``sender`` sent (its authenticated wire
    identity), is to be believed. ``members`` maps each active member to its Ed25519
    public key; ``last_seq`` the highest seq accepted from each machine."""
    who = announcement.machine_id
    public = members.get(who)
    if sender != who or public is None or announcement.signature is None:
        raise ForgedAnnouncement(f"an announcement of {who} sent by {sender} is refused")
    if not verify(public, announcement.signable(), announcement.signature):
        raise ForgedAnnouncement(f"the announcement of {who} is not signed by its key")
    if announcement.seq <= last_seq.get(who, 0):
        raise StaleAnnouncement(
            f"the announcement {announcement.seq} of {who} is not newer than {last_seq.get(who, 0)}"
        )


def next_announcement(
    last: Announcement | None,
    machine_id: str,
    wire: tuple[str, ...],
    http: str,
    now_ms: int,
    *,
    versions: Versions | None = None,
) -> Announcement | None:
    """The announcement to make for these endpoints and ``versions`` (unsigned), or None
    when ``last`` already says so. ``seq`` grows past ``last`` and follows the wall clock,
    so a home restored from an old backup still announces above what its peers accepted."""
    if last is not None and (last.wire, last.http, last.versions) == (wire, http, versions):
        return None
    seq = max(now_ms, 0 if last is None else last.seq + 1)
    return Announcement(machine_id, min(seq, MAX_SEQ), wire, http, versions=versions)
