"""Leaving a mesh: the signed request a standby sends to the awake machine.

A leave request is a statement signed with the leaving machine's Ed25519 key:
"machine M, paired at T, leaves the mesh whose awake member is A". The awake
machine checks the signature against the key its registry holds for M and that T is
M's current pairing, so a captured request can be replayed only to repeat the same
revocation, never to revoke M again after a fresh pairing.

A leave is idempotent: a request for a pairing that is already revoked (the answer to
an earlier leave was lost, or the awake machine removed M first) is accepted again, so
`baton leave` can always be retried to the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import nacl.exceptions
import nacl.signing

from baton.core.errors import BadRequest, PeerFault
from baton.core.registry import MachineEntry
from baton.wire.pake import b64d, b64e

VERSION = 1
FIELDS = ("v", "action", "machine_id", "awake", "paired_at")


def _statement(machine_id: str, awake: str, paired_at: float) -> bytes:
    doc = {
        "v": VERSION,
        "action": "leave",
        "machine_id": machine_id,
        "awake": awake,
        "paired_at": paired_at,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign_leave(
    key: nacl.signing.SigningKey, machine_id: str, awake: str, paired_at: float
) -> dict[str, Any]:
    statement = _statement(machine_id, awake, paired_at)
    return {**json.loads(statement), "signature": b64e(key.sign(statement).signature)}


class LeaveRefused(PeerFault):
    """A leave request that does not verify."""

    code = "leave_refused"


def verify_leave(body: Mapping[str, Any], awake: str, entry: MachineEntry) -> None:
    """Raise unless ``body`` is ``entry``'s own signed leave from this mesh."""
    if set(body) != {*FIELDS, "signature"} or body.get("v") != VERSION:
        raise BadRequest(f"a leave request has exactly the fields {[*FIELDS, 'signature']}")
    if body["action"] != "leave" or body["awake"] != awake:
        raise LeaveRefused("the request is not a leave from this mesh")
    paired_at = body["paired_at"]
    if isinstance(paired_at, bool) or not isinstance(paired_at, int | float):
        raise BadRequest("paired_at must be a number")
    if paired_at != entry.added_at:  # revoked or not: the same pairing, so the same outcome
        raise LeaveRefused("the request is for an earlier pairing of this machine")
    statement = _statement(entry.machine_id, awake, float(paired_at))
    signature = b64d(str(body["signature"]), "signature", 128)
    try:
        nacl.signing.VerifyKey(entry.identity.signing_public).verify(statement, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise LeaveRefused("the signature does not verify") from None
