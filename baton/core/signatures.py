"""What signs and what verifies, behind ports (the Ed25519 keys live in baton.adapters.signing),
and the one decoder of a signature carried as base64 text. No I/O."""

from __future__ import annotations

import json
from base64 import b64decode
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class Signer(Protocol):
    """Signs for one machine (its Ed25519 key lives behind this port)."""

    machine_id: str

    def sign(self, data: bytes) -> bytes: ...


#: verify(signing_public, data, signature) -> bool; the Ed25519 check behind a port.
Verify = Callable[[bytes, bytes, bytes], bool]


def decode_signature(value: object) -> bytes | None:
    """An Ed25519 signature from base64 text (None stays None); TypeError or ValueError
    when it is not one."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("signature must be base64 text")
    raw = b64decode(value, validate=True)
    if len(raw) != 64:
        raise ValueError("an Ed25519 signature has 64 bytes")
    return raw


def signable(context: bytes, doc: Mapping[str, Any]) -> bytes:
    """The canonical bytes signed for ``doc``: ``context`` (what kind of document, so a
    signature of one kind never verifies as another), then every field but the
    signature as compact JSON with sorted keys."""
    fields = {k: v for k, v in doc.items() if k != "signature"}
    return context + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
