"""How the registry's entries and this machine's identity are shown to operators, the
same from the CLI (reading the home) and from the node's HTTP API. Pure: the CLI
imports this without the node."""

from __future__ import annotations

from typing import Any

from baton.core.identity import PublicIdentity, fingerprint
from baton.core.registry import MachineEntry


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
    }


def identity_view(me: PublicIdentity) -> dict[str, Any]:
    return {
        **me.to_dict(),
        "signing_fingerprint": fingerprint(me.signing_public),
        "encryption_fingerprint": fingerprint(me.encryption_public),
    }
