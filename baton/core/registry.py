"""MachineRegistry: who belongs to the mesh, as this machine knows it.

Invariants:
- Entries are keyed by machine_id, and a machine_id is derived from its signing key,
  so one id can never change keys.
- Nicknames are unique among the active entries (a revoked machine's nickname is free
  for the next machine); encryption keys are unique among all entries.
- Revocation sticks: a revoked entry is made active again only by add(readmit=True),
  which a fresh pairing does. A re-admission's added_at is later than the revocation
  *as recorded* (max(now, revoked_at + READMIT_STEP_S)), so the order of revocation and
  re-admission never depends on two machines' wall clocks agreeing.
- The registry is a value: every change returns a new registry, the old one is
  untouched, and a refused change raises without changing anything.

Entries are signed by the awake member (signed()); rosters it sends are applied by
merge_roster() only if every entry verifies.
"""

from __future__ import annotations

import binascii
import math
from base64 import b64encode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from baton.core.announce import Announcement
from baton.core.endpoints import HTTP_RE, WIRE_RE, check_endpoint
from baton.core.errors import (
    AnnouncementRefused,
    BadRequest,
    BatonError,
    InvalidCard,
    NicknameTaken,
    NotFound,
    RosterRefused,
)
from baton.core.identity import PublicIdentity
from baton.core.signatures import Signer as Signer
from baton.core.signatures import Verify as Verify
from baton.core.signatures import decode_signature, signable
from baton.core.versions import Versions, cannot_speak, mesh_protocol, write_at


class Role(StrEnum):
    AWAKE = "awake"
    STANDBY = "standby"


class Status(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


CARD_FIELDS = frozenset({"wire", "http"})
# a joiner's card may carry its own signed announcement (its versions with it), which
# the registry keeps once it verifies (RegistryActor): the mesh knows what it runs at once
OPTIONAL_CARD_FIELDS = frozenset({"announcement"})
SIGNING_CONTEXT = b"baton registry entry v1\n"
IDENTITY_FIELDS = frozenset({"machine_id", "nickname", "signing_public", "encryption_public"})
READMIT_STEP_S = 0.001  # a re-admission is at least this much later than its revocation


@dataclass(frozen=True)
class MachineEntry:
    """One machine as the registry knows it."""

    identity: PublicIdentity
    role: Role
    status: Status
    wire: str
    http: str
    added_at: float
    revoked_at: float | None = None
    revoked_reason: str | None = None
    signed_by: str | None = None  # the awake member that vouches for this entry
    signature: bytes | None = None  # Ed25519 over signable(), by signed_by
    announcement: Announcement | None = None  # the newest, signed by this machine

    @property
    def machine_id(self) -> str:
        return self.identity.machine_id

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Its wire endpoints in the order to dial them."""
        return self.announcement.wire if self.announcement is not None else (self.wire,)

    @property
    def versions(self) -> Versions | None:
        """The baton it runs and the protocols it speaks, as it announced them (None: it
        has not said: an older baton)."""
        return None if self.announcement is None else self.announcement.versions

    @property
    def announced_seq(self) -> int:
        return 0 if self.announcement is None else self.announcement.seq

    @property
    def nickname(self) -> str:
        return self.identity.nickname

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.identity.to_dict(),
            "role": self.role.value,
            "status": self.status.value,
            "wire": self.wire,
            "http": self.http,
            "added_at": self.added_at,
            "revoked_at": self.revoked_at,
            "revoked_reason": self.revoked_reason,
            "signed_by": self.signed_by,
            "signature": None if self.signature is None else b64encode(self.signature).decode(),
            "announcement": None if self.announcement is None else self.announcement.to_dict(),
        }

    def signable(self) -> bytes:
        """The canonical bytes an awake member signs: every field but the signature."""
        return signable(SIGNING_CONTEXT, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineEntry:
        if not isinstance(data, Mapping):  # a peer's roster may hold anything
            raise InvalidCard(f"a registry entry is an object, not {type(data).__name__}")
        extra = frozenset(data) - IDENTITY_FIELDS
        identity = PublicIdentity.from_dict(data, extra_ok=extra)
        try:
            return cls(
                identity=identity,
                role=Role(data["role"]),
                status=Status(data["status"]),
                wire=check_endpoint(data["wire"], "wire", WIRE_RE),
                http=check_endpoint(data["http"], "http", HTTP_RE),
                added_at=_finite(data["added_at"]),
                revoked_at=None if data.get("revoked_at") is None else _finite(data["revoked_at"]),
                revoked_reason=data.get("revoked_reason"),
                signed_by=data.get("signed_by"),
                signature=decode_signature(data.get("signature")),
                announcement=_announcement_of(identity.machine_id, data.get("announcement")),
            )
        except (KeyError, ValueError, TypeError, OverflowError, binascii.Error) as exc:
            raise InvalidCard(f"registry entry {identity.machine_id}: {exc!r}") from None


def _announcement_of(machine_id: str, doc: object) -> Announcement | None:
    if doc is None:
        return None
    try:
        announcement = Announcement.from_dict(doc)
    except AnnouncementRefused as exc:
        raise ValueError(f"announcement: {exc.detail}") from None
    if announcement.machine_id != machine_id:
        raise ValueError(f"the announcement of {announcement.machine_id} in another entry")
    return announcement


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a time must be a number")
    result = float(value)  # OverflowError for a huge integer
    if not math.isfinite(result):
        raise ValueError("a time must be finite")
    return result


def sign_entry(entry: MachineEntry, signer: Signer) -> MachineEntry:
    unsigned = replace(entry, signed_by=signer.machine_id, signature=None)
    return replace(unsigned, signature=signer.sign(unsigned.signable()))


def open_registry(
    saved: MachineRegistry | None, me: PublicIdentity, wire: str, http: str, now_wall: float
) -> MachineRegistry:
    """The registry a node starts with: the saved one with our endpoints refreshed, or a
    new mesh with this machine as its only, awake member."""
    if saved is None:
        founder = MachineEntry(
            identity=me,
            role=Role.AWAKE,
            status=Status.ACTIVE,
            wire=wire,
            http=http,
            added_at=now_wall,
        )
        return MachineRegistry(self_id=me.machine_id, entries={me.machine_id: founder})
    if saved.self_id != me.machine_id or saved.me.identity != me:
        raise InvalidCard(f"the saved registry belongs to {saved.self_id}, not {me.machine_id}")
    return saved.with_endpoints(me.machine_id, wire, http)


def entry_from_card(card: Mapping[str, Any], now_wall: float) -> MachineEntry:
    """A peer's card (public identity plus its wire and http endpoints) as a standby entry."""
    identity = PublicIdentity.from_dict(card, extra_ok=CARD_FIELDS | OPTIONAL_CARD_FIELDS)
    missing = CARD_FIELDS - frozenset(card)
    if missing:
        raise InvalidCard(f"card lacks {', '.join(sorted(missing))}")
    return MachineEntry(
        identity=identity,
        role=Role.STANDBY,
        status=Status.ACTIVE,
        wire=check_endpoint(card["wire"], "wire", WIRE_RE),
        http=check_endpoint(card["http"], "http", HTTP_RE),
        added_at=now_wall,
    )


def _check_distinct(entry: MachineEntry, other: MachineEntry) -> None:
    both_active = entry.status is Status.ACTIVE and other.status is Status.ACTIVE
    if both_active and other.nickname == entry.nickname:
        raise NicknameTaken(f"nickname {entry.nickname!r} is already used by {other.machine_id}")
    if other.identity.encryption_public == entry.identity.encryption_public:
        raise InvalidCard(
            f"encryption_public of {entry.machine_id} is already the key of {other.machine_id}"
        )


def is_signed_by(entry: MachineEntry, signer: MachineEntry, verify: Verify) -> bool:
    return (
        entry.signed_by == signer.machine_id
        and entry.signature is not None
        and verify(signer.identity.signing_public, entry.signable(), entry.signature)
    )


def _self_signed(entry: MachineEntry, verify: Verify) -> bool:
    a = entry.announcement
    return (
        a is not None
        and a.signature is not None
        and verify(entry.identity.signing_public, a.signable(), a.signature)
    )


def _newest_endpoints(entry: MachineEntry, old: MachineEntry | None) -> MachineEntry:
    """``entry`` from a roster, keeping our endpoints for it when we accepted a newer
    announcement from the machine itself than the roster carries."""
    if old is None or old.announced_seq <= entry.announced_seq:
        return entry
    return replace(entry, wire=old.wire, http=old.http, announcement=old.announcement)


def _may_replace(old: MachineEntry, new: MachineEntry) -> bool:
    """Revocation sticks: only a re-admission after it (a fresh pairing) undoes it."""
    if old.status is not Status.REVOKED:
        return True
    return new.status is Status.ACTIVE and new.added_at > (old.revoked_at or 0.0)


@dataclass(frozen=True)
class MachineRegistry:
    """The members of the mesh, this machine included."""

    self_id: str
    entries: Mapping[str, MachineEntry] = field(default_factory=dict)

    def get(self, machine_id: str) -> MachineEntry:
        try:
            return self.entries[machine_id]
        except KeyError:
            raise NotFound(f"no machine {machine_id} in the registry") from None

    @property
    def me(self) -> MachineEntry:
        return self.get(self.self_id)

    def add(self, entry: MachineEntry, readmit: bool = False) -> MachineRegistry:
        """Add or refresh an entry. Refuses a nickname already used by another active
        machine, an encryption key already used by any other machine, and a revoked
        machine unless ``readmit`` (a fresh pairing)."""
        old = self.entries.get(entry.machine_id)
        if old is not None and old.status is Status.REVOKED and not readmit:
            raise InvalidCard(f"{entry.machine_id} was revoked; only a fresh pairing re-admits it")
        for other in self.entries.values():
            if other.machine_id != entry.machine_id:
                _check_distinct(entry, other)
        if old is not None and old.status is Status.ACTIVE:
            entry = replace(entry, role=old.role, added_at=old.added_at)
        elif old is not None:  # re-admission: strictly after the revocation it undoes
            floor = max(old.added_at, old.revoked_at or 0.0) + READMIT_STEP_S
            entry = replace(entry, added_at=max(entry.added_at, floor))
        return replace(self, entries={**self.entries, entry.machine_id: entry})

    def revoke(self, machine_id: str, now_wall: float, reason: str) -> MachineRegistry:
        """Revoke another machine (idempotent: a revoked one keeps its first reason)."""
        if machine_id == self.self_id:
            raise BadRequest("a machine cannot revoke itself; run `baton leave` on it")
        entry = self.get(machine_id)
        if entry.status is Status.REVOKED:
            return self
        if entry.role is Role.AWAKE:
            raise BadRequest(f"{entry.nickname} is awake; hand the role off before revoking it")
        gone = replace(entry, status=Status.REVOKED, revoked_at=now_wall, revoked_reason=reason)
        return replace(self, entries={**self.entries, machine_id: gone})

    def find(self, name: str) -> MachineEntry:
        """An entry by machine id or nickname: the active one with that nickname, else
        the most recently paired revoked one."""
        matches = [e for e in self.entries.values() if name in (e.nickname, e.machine_id)]
        if matches:
            return max(matches, key=lambda e: (e.status is Status.ACTIVE, e.added_at))
        raise NotFound(f"no machine called {name!r} in the registry")

    def check(self) -> MachineRegistry:
        """Raise if the entries break the registry's invariants (e.g. a hand-edited file)."""
        entries = list(self.entries.values())
        for i, entry in enumerate(entries):
            for other in entries[i + 1 :]:
                _check_distinct(entry, other)
        self.get(self.self_id)
        return self

    def signed(self, signer: Signer) -> MachineRegistry:
        """Every entry signed by ``signer`` (the awake member). Ed25519 is deterministic,
        so an unchanged entry gets the same signature again."""
        entries = {m: sign_entry(e, signer) for m, e in self.entries.items()}
        return replace(self, entries=entries)

    def merge_roster(
        self, members: Sequence[MachineEntry], from_id: str, verify: Verify
    ) -> MachineRegistry:
        """Apply a roster sent by ``from_id``, which must be the active awake member and
        must have signed every entry in it (checked with ``verify``).

        New members are learnt and known ones updated; a revoked member stays revoked;
        our own entry is ours to keep. A roster that would break the registry's
        invariants is refused whole (RosterRefused), changing nothing.
        """
        sender = self.entries.get(from_id)
        if sender is None or sender.role is not Role.AWAKE or sender.status is not Status.ACTIVE:
            raise RosterRefused(f"{from_id} is not the awake member; its roster is ignored")
        entries = dict(self.entries)
        for entry in members:
            if not is_signed_by(entry, sender, verify):
                raise RosterRefused(
                    f"{entry.machine_id} in the roster of {from_id} is not signed by it"
                )
            if entry.announcement is not None and not _self_signed(entry, verify):
                raise RosterRefused(
                    f"the announcement of {entry.machine_id} in the roster of {from_id} "
                    "is not signed by its key"
                )
            old = entries.get(entry.machine_id)
            if entry.machine_id == self.self_id or (old and not _may_replace(old, entry)):
                continue
            entries[entry.machine_id] = _newest_endpoints(entry, old)
        try:
            return replace(self, entries=entries).check()
        except BatonError as exc:
            raise RosterRefused(f"roster from {from_id} refused: {exc.detail}") from None

    def with_awake(self, machine_id: str) -> MachineRegistry:
        """The lease holder ``machine_id`` awake and every other member standby (the
        lease, not the registry, decides who is awake; this keeps the two in step)."""
        if self.get(machine_id).status is not Status.ACTIVE:
            raise BadRequest(f"{machine_id} is not an active member")
        entries = {}
        for m, e in self.entries.items():
            want = Role.AWAKE if m == machine_id else Role.STANDBY
            entries[m] = e if e.role is want else replace(e, role=want)
        return replace(self, entries=entries)

    def with_endpoints(self, machine_id: str, wire: str, http: str) -> MachineRegistry:
        entry = replace(self.get(machine_id), wire=wire, http=http)
        return replace(self, entries={**self.entries, machine_id: entry})

    def with_announcement(self, announcement: Announcement) -> MachineRegistry:
        """The machine's endpoints as it announced them (accepted by the caller:
        baton.core.announce.accept, or our own)."""
        entry = replace(
            self.get(announcement.machine_id),
            wire=announcement.wire[0],
            http=announcement.http,
            announcement=announcement,
        )
        return replace(self, entries={**self.entries, entry.machine_id: entry})

    def announced(self) -> dict[str, int]:
        """The seq of the newest announcement known from each machine."""
        return {m: e.announced_seq for m, e in self.entries.items() if e.announcement}

    def signing_keys(self) -> dict[str, bytes]:
        """Each active member's Ed25519 public key."""
        return {
            m: e.identity.signing_public
            for m, e in self.entries.items()
            if e.status is Status.ACTIVE
        }

    def active_peers(self) -> list[MachineEntry]:
        """Every active member except this machine, in a stable order."""
        return sorted(
            (
                e
                for e in self.entries.values()
                if e.status is Status.ACTIVE and e.machine_id != self.self_id
            ),
            key=lambda e: e.nickname,
        )

    def listing(self) -> list[MachineEntry]:
        return sorted(
            self.entries.values(),
            key=lambda e: (e.machine_id != self.self_id, e.nickname, e.machine_id),
        )


class RegistryStore(Protocol):
    """Where a machine keeps its registry between runs.

    load() returns the saved registry or None if none was ever saved, and raises
    HomeError (leaving the data untouched) if what is saved cannot be read.
    save() replaces the saved registry atomically: a crash leaves the old or the new.
    """

    def load(self) -> MachineRegistry | None: ...

    def save(self, registry: MachineRegistry) -> None: ...


def mesh_protocol_of(me: str, mine: Versions, peers: Iterable[MachineEntry]) -> int:
    """The protocol the mesh runs at: ``peers`` (the active ones) as they announced, this
    machine (``me``) by what it runs (baton.core.versions)."""
    members: dict[str, Versions | None] = {p.machine_id: p.versions for p in peers}
    members[me] = mine
    return mesh_protocol(members)


def unable_with(me: str, mine: Versions, peers: Iterable[MachineEntry]) -> str | None:
    """Why this machine, running ``mine``, may neither hold nor take a handoff among
    ``peers`` (None: it may)."""
    return cannot_speak(mine, mesh_protocol_of(me, mine, peers))


def writes_at(me: str, mine: Versions, peers: Iterable[MachineEntry]) -> int:
    """The protocol version this machine writes its envelopes in among ``peers``."""
    return write_at(mine, mesh_protocol_of(me, mine, peers))
