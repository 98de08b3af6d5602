"""Ed25519 behind the core's Signer and Verify ports (PyNaCl)."""

from __future__ import annotations

import nacl.exceptions
import nacl.signing


class Ed25519Signer:
    """Signs with a machine's signing key. Satisfies baton.core.registry.Signer."""

    def __init__(self, machine_id: str, key: nacl.signing.SigningKey) -> None:
        self.machine_id = machine_id
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data).signature)

    def __repr__(self) -> str:
        return f"Ed25519Signer({self.machine_id})"


def verify_ed25519(public: bytes, data: bytes, signature: bytes) -> bool:
    """True if ``signature`` is ``public``'s Ed25519 signature of ``data``."""
    try:
        nacl.signing.VerifyKey(public).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        return False
    return True
