"""Versions (sans-IO): which baton each machine runs, which wire protocol versions it
speaks, and the one protocol version the mesh runs at (docs/DESIGN.md, "Versions").

Theory of operation (etcd's cluster version, Kubernetes' version-skew policy). Every
machine speaks a range of protocol versions ``[lo, hi]`` and says so, with its baton
version, in its signed endpoint announcement (baton.core.announce), which every member
keeps in that machine's registry entry and the holder's roster relays. The mesh runs at
the highest protocol version that every active member speaks: the lowest ``hi`` among
them (``mesh_protocol``). New behaviour waits until every member can speak it. A machine
whose ``lo`` is above the mesh's version cannot speak it (``cannot_speak``): it may
neither acquire the lease nor receive a handoff. A member that never said (its
announcement is from before versions were announced) speaks protocol 1 alone.

``skew`` is what an operator is told: members on another baton version than this
machine, and members that cannot speak the mesh's version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LEGACY = (1, 1)  # what a member that never said speaks
MAX_PROTOCOL = 2**31 - 1
VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}")  # PEP 440 and local labels
FIELDS = frozenset({"version", "protocols"})
CANNOT_SPEAK = "cannot speak protocol"  # in every refusal for it (a wakeup does not retry)


@dataclass(frozen=True)
class Versions:
    """A machine's baton version and the protocol versions it speaks, ``lo`` to ``hi``."""

    baton: str
    protocols: tuple[int, int]

    def speaks(self, protocol: int) -> bool:
        lo, hi = self.protocols
        return lo <= protocol <= hi

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.baton, "protocols": list(self.protocols)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Versions:
        """The versions in ``doc`` (its "version" and "protocols"); ValueError naming what
        is wrong."""
        version, protocols = doc.get("version"), doc.get("protocols")
        if not isinstance(version, str) or VERSION_RE.fullmatch(version) is None:
            raise ValueError("version: expected 1 to 64 characters of a version string")
        if not isinstance(protocols, list) or len(protocols) != 2:
            protocols = [0, 0]
        lo, hi = protocols
        if not all(type(p) is int and 1 <= p <= MAX_PROTOCOL for p in (lo, hi)) or lo > hi:
            raise ValueError(f"protocols: expected [lo, hi] with 1 <= lo <= hi <= {MAX_PROTOCOL}")
        return cls(version, (lo, hi))


def spoken(versions: Versions | None) -> tuple[int, int]:
    return LEGACY if versions is None else versions.protocols


def mesh_protocol(members: Mapping[str, Versions | None]) -> int:
    """The protocol version the mesh runs at: the highest every active member (this one
    among them) speaks, or the lowest one of theirs where no version is common to all."""
    return min((spoken(v)[1] for v in members.values()), default=LEGACY[1])


def cannot_speak(versions: Versions | None, mesh: int, who: str = "this machine") -> str | None:
    """Why ``who``, running ``versions`` (None: never said), may neither hold the lease
    nor take a handoff in a mesh at protocol ``mesh`` (None: it may). The one wording of
    it, wherever it is said."""
    lo, hi = spoken(versions)
    if lo <= mesh <= hi:
        return None
    runs = "an older baton" if versions is None else f"baton {versions.baton}"
    return f"{who} ({runs}, protocols {lo}-{hi}) {CANNOT_SPEAK} {mesh}, the one the mesh runs at"


def write_at(versions: Versions, mesh: int) -> int:
    """The protocol version a machine running ``versions`` writes its envelopes in: the
    mesh's, or the nearest it speaks when it cannot (its peers then refuse them, counted)."""
    lo, hi = versions.protocols
    return min(max(mesh, lo), hi)


def skew(me: str, members: Mapping[str, Versions | None], names: Mapping[str, str]) -> list[str]:
    """What an operator should see (empty: nothing): the members that run another baton
    version than ``me``, and the members that cannot speak the mesh's protocol."""
    mesh = mesh_protocol(members)
    mine = members.get(me)
    said: list[str] = []
    for machine_id in sorted(members, key=lambda m: names.get(m, m)):
        v, name = members[machine_id], names.get(machine_id, machine_id)
        if (why := cannot_speak(v, mesh, name)) is not None:
            said.append(why)
        elif machine_id != me and mine is not None and v is not None and v.baton != mine.baton:
            said.append(f"{name} runs baton {v.baton}; this machine runs {mine.baton}")
        elif machine_id != me and v is None:
            said.append(f"{name} has not said its version (an older baton)")
    return said
