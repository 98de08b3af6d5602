"""Deterministic test identities and signers (by seed), and a signer that lies about
whom it signs for: what the registry and announcement tests forge with."""

from __future__ import annotations

from dataclasses import dataclass

import nacl.public
import nacl.signing

from baton.adapters.signing import Ed25519Signer
from baton.core.identity import PublicIdentity


def key(seed: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes([seed]) * 32)


def identity(nick: str, seed: int) -> PublicIdentity:
    ek = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
    return PublicIdentity.from_keys(nick, bytes(key(seed).verify_key), bytes(ek.public_key))


def signer(seed: int) -> Ed25519Signer:
    return Ed25519Signer(identity("x", seed).machine_id, key(seed))


@dataclass
class ForeignSigner:
    """Claims to be ``machine_id`` but signs with the key of seed ``seed``."""

    machine_id: str
    seed: int

    def sign(self, data: bytes) -> bytes:
        return bytes(key(self.seed).sign(data).signature)
