"""How the registry's entries and this machine's identity are shown to operators, the
same from the CLI (reading the home) and from the node's HTTP API. Pure: the CLI
imports this without the node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from baton.core.features import COMPONENTS, CORE
from baton.core.identity import PublicIdentity, fingerprint
from baton.core.registry import MachineEntry, Status
from baton.core.versions import Versions, mesh_protocol, skew, spoken


def machine_view(
    entry: MachineEntry, self_id: str, last_seen_s: float | None = None
) -> dict[str, Any]:
    """How one registry entry is shown to operators (CLI and HTTP). ``last_seen_s`` is a
    wall time (this machine's clock) of the last pong from it, when the node knows it."""
    return {
        "machine_id": entry.machine_id,
        "nickname": entry.nickname,
        "role": entry.role.value,
        "status": entry.status.value,
        "self": entry.machine_id == self_id,
        "wire": entry.wire,
        "endpoints": list(entry.endpoints),
        "http": entry.http,
        "added_at": entry.added_at,
        "paired_at": entry.added_at,
        "last_seen": last_seen_s,
        "revoked_at": entry.revoked_at,
        "revoked_reason": entry.revoked_reason,
        **versions_view(entry),
    }


def mesh_versions_view(me: str, this: Versions, entries: Iterable[MachineEntry]) -> dict[str, Any]:
    """This machine's versions (``this``: what it runs, whatever it has announced yet),
    the protocol the mesh's active members run at, and the skew an operator should see."""
    members = {
        e.machine_id: this if e.machine_id == me else e.versions
        for e in entries
        if e.status is Status.ACTIVE
    }
    names = {e.machine_id: e.nickname for e in entries}
    return {
        "version": this.baton,
        "protocols": list(this.protocols),
        "mesh_protocol": mesh_protocol(members),
        "skew": skew(me, members, names),
    }


def versions_view(entry: MachineEntry) -> dict[str, Any]:
    """The baton a machine runs and the protocols it speaks, as it announced them (None:
    it has not said: an older baton, protocol 1 alone)."""
    said = entry.versions
    return {
        "version": None if said is None else said.baton,
        "protocols": list(spoken(said)),
    }


def identity_view(me: PublicIdentity) -> dict[str, Any]:
    return {
        **me.to_dict(),
        "signing_fingerprint": fingerprint(me.signing_public),
        "encryption_fingerprint": fingerprint(me.encryption_public),
    }


def features_view(signed: Mapping[str, Any], pool: Mapping[str, Any] | None) -> dict[str, Any]:
    """`baton features`: each component's flag (the pool's is its own switch; without a
    lease store there is no pool), and the core guarantees, which have none."""
    flags = {**signed["flags"], "pool": bool(pool and pool["enabled"])}
    return {
        "components": [
            {
                "name": name,
                "enabled": flags[name],
                "available": name != "pool" or pool is not None,
                "about": about,
            }
            for name, about in COMPONENTS.items()
        ],
        "core": [{"name": name, "about": about} for name, about in CORE.items()],
        "epoch": signed["epoch"],
        "version": signed["version"],
        "set_by": signed["set_by"],
    }
