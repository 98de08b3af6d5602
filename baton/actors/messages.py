"""Messages between actors: immutable, past tense for events, imperative for commands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton.core.registry import MachineEntry
from baton.wire.envelope import Envelope


@dataclass(frozen=True)
class Tick:
    """Time passed; ``now_ms`` is local monotonic time."""

    now_ms: float


@dataclass(frozen=True)
class EnvelopeReceived:
    envelope: Envelope


@dataclass(frozen=True)
class MembersChanged:
    """The active peers as the registry has them now (every actor that talks to peers
    hears it: the peer monitor, the lease, delivery, the live tail, the handoff)."""

    peers: tuple[MachineEntry, ...]


@dataclass(frozen=True)
class GetPeerReports:
    pass


@dataclass(frozen=True)
class ListMachines:
    pass


@dataclass(frozen=True)
class GetSelf:
    pass


@dataclass(frozen=True)
class AddMachine:
    card: Mapping[str, Any]
    readmit: bool = False  # a fresh pairing may re-admit a revoked machine


@dataclass(frozen=True)
class RevokeMachine:
    """Revoke a machine by nickname or id; only the awake member does this."""

    name: str
    reason: str


@dataclass(frozen=True)
class AnnounceSelf:
    """This machine's endpoints now (at start and whenever they change): the registry
    announces them, signed, if they differ from its last announcement."""

    wire: tuple[str, ...]
    http: str


@dataclass(frozen=True)
class CheckCard:
    """Would AddMachine(card) be accepted? Raises like it would; changes nothing."""

    card: Mapping[str, Any]
    readmit: bool = False
