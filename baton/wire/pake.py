"""The cryptographic half of pairing: SPAKE2, key confirmation, SAS and sealing.

Theory of operation: the joiner (SPAKE2 side A) sends its message to the host
(side B, the awake machine); the host answers with its own message and a host
confirmation MAC; the joiner checks it and sends its own confirmation plus its
sealed identity card; the host checks that and answers with the sealed roster.
This module is bytes in, values out: no HTTP, no files, no clock.

What it protects against: a passive listener learns nothing about the code or
the keys; an active stranger gets one online guess per run (the caller counts
runs against the session's attempts); a stranger who guessed wrong can neither
pass a confirmation nor read or forge a sealed payload.

Invariants:
- The code never leaves this module: only SPAKE2 messages, MACs and sealed
  payloads are produced for the network.
- Both sides derive equal keys (and hence equal transcripts, SAS and
  confirmations) iff they used the same code, except with negligible probability.
- Every key is derived by HKDF-SHA256 from the SPAKE2 key with its own label and
  the transcript hash as salt, so keys for different purposes are independent.
- The joiner's card carries its Ed25519 signature of possession_statement(transcript),
  so a joiner who knows the code cannot enrol a key it does not hold.
- Confirmations are bound to a side: the host's MAC never passes as the joiner's.
- Sealed payloads are direction-bound: a payload sealed to the host opens only
  as "from the joiner" and vice versa, so a reflected payload is refused.
- MACs are compared in constant time (hmac.compare_digest).
- Decoding a peer's bytes yields a value or raises PairingError; never anything else.

Known limit: the spake2 package draws its own randomness (os.urandom) inside
``start()``, so SPAKE2 scalars cannot be injected; only AEAD nonces use ``rng``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

from baton.core.errors import PairingError, WrongCode

Rng = Callable[[int], bytes]

ID_JOINER = b"baton-joiner"
ID_HOST = b"baton-host"
CONTEXT = b"baton pairing v1"
SPAKE2_MESSAGE_BYTES = 33  # one side byte (b"A"/b"B") and one Ed25519 element
MAX_FIELD_BYTES = 64 * 1024
SEAL_VERSION = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16


class Side(StrEnum):
    """Which end of a pairing run a party plays."""

    HOST = "host"
    JOINER = "joiner"


def _hkdf(key: bytes, salt: bytes, label: bytes, length: int = 32) -> bytes:
    info = CONTEXT + b" " + label
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def transcript_hash(joiner_message: bytes, host_message: bytes) -> bytes:
    """SHA-256 over the context string and both SPAKE2 messages, length-prefixed."""
    h = hashlib.sha256(CONTEXT + b" transcript")
    for part in (joiner_message, host_message):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


@dataclasses.dataclass(frozen=True, eq=False)
class PakeKeys:
    """The keys of one finished pairing run, as seen by one side.

    Secret fields are kept out of ``repr`` and out of equality (``eq=False``: no
    non-constant-time comparison of secrets by accident). ``transcript`` and
    ``sas`` are public: the SAS is shown to the operator.
    """

    transcript: bytes
    sas: str
    _confirm_host: bytes = dataclasses.field(repr=False)
    _confirm_joiner: bytes = dataclasses.field(repr=False)
    _to_host: bytes = dataclasses.field(repr=False)
    _to_joiner: bytes = dataclasses.field(repr=False)
    _rng: Rng = dataclasses.field(repr=False, default=os.urandom)

    @classmethod
    def derive(
        cls, key: bytes, joiner_message: bytes, host_message: bytes, rng: Rng = os.urandom
    ) -> PakeKeys:
        """Derive every pairing key from the SPAKE2 key and both messages."""
        t = transcript_hash(joiner_message, host_message)
        n = int.from_bytes(_hkdf(key, t, b"sas", 8), "big") % 1_000_000
        return cls(
            transcript=t,
            sas=f"{n // 1000:03d} {n % 1000:03d}",
            _confirm_host=_hkdf(key, t, b"confirm-host"),
            _confirm_joiner=_hkdf(key, t, b"confirm-joiner"),
            _to_host=_hkdf(key, t, b"seal-to-host"),
            _to_joiner=_hkdf(key, t, b"seal-to-joiner"),
            _rng=rng,
        )

    def _mac(self, side: Side) -> bytes:
        key = self._confirm_host if side is Side.HOST else self._confirm_joiner
        msg = CONTEXT + b" confirm " + side.value.encode() + b" " + self.transcript
        return hmac.new(key, msg, hashlib.sha256).digest()

    def host_confirmation(self) -> bytes:
        """The MAC the host sends to prove it derived the same key."""
        return self._mac(Side.HOST)

    def joiner_confirmation(self) -> bytes:
        """The MAC the joiner sends to prove it derived the same key."""
        return self._mac(Side.JOINER)

    def _check(self, side: Side, mac: bytes) -> None:
        if not isinstance(mac, bytes) or not hmac.compare_digest(mac, self._mac(side)):
            raise WrongCode(f"the {side.value} confirmation does not match: the codes differ")

    def check_host_confirmation(self, mac: bytes) -> None:
        """Raise WrongCode (attempts_left=0; the caller fills it in) unless ``mac`` matches."""
        self._check(Side.HOST, mac)

    def check_joiner_confirmation(self, mac: bytes) -> None:
        """Raise WrongCode (attempts_left=0; the caller fills it in) unless ``mac`` matches."""
        self._check(Side.JOINER, mac)

    def _direction(self, to_side: Side) -> tuple[ChaCha20Poly1305, bytes]:
        key = self._to_host if Side(to_side) is Side.HOST else self._to_joiner
        aad = CONTEXT + b" seal to " + Side(to_side).value.encode() + b" " + self.transcript
        return ChaCha20Poly1305(key), aad

    def seal(self, plaintext: bytes, to_side: Side) -> bytes:
        """Encrypt ``plaintext`` for ``to_side``: version byte, random nonce, ciphertext."""
        aead, aad = self._direction(to_side)
        nonce = self._rng(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"rng returned {len(nonce)} bytes, wanted {NONCE_BYTES}")
        return SEAL_VERSION + nonce + aead.encrypt(nonce, plaintext, aad)

    def open(self, data: bytes, from_side: Side) -> bytes:
        """Decrypt a payload sealed by ``from_side``; PairingError on any tampering."""
        to_side = Side.JOINER if Side(from_side) is Side.HOST else Side.HOST
        aead, aad = self._direction(to_side)
        if not isinstance(data, bytes) or len(data) < 1 + NONCE_BYTES + TAG_BYTES:
            raise PairingError("sealed payload is truncated")
        if data[:1] != SEAL_VERSION:
            raise PairingError("sealed payload has an unknown version")
        nonce, body = data[1 : 1 + NONCE_BYTES], data[1 + NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise PairingError(
                f"sealed payload from the {Side(from_side).value} does not open: "
                "tampered, misdirected or under another key"
            ) from None


def _finish(party: Any, peer_side: bytes, message: bytes) -> bytes:
    """Run ``party.finish(message)``, turning every peer fault into PairingError."""
    if not isinstance(message, bytes) or len(message) != SPAKE2_MESSAGE_BYTES:
        raise PairingError(f"SPAKE2 message must be {SPAKE2_MESSAGE_BYTES} bytes")
    if message[:1] != peer_side:
        raise PairingError(f"SPAKE2 message is not from side {peer_side.decode()}")
    try:
        key: bytes = party.finish(message)
    # The library raises a mix of undocumented types (SPAKEError, ValueError,
    # NotOnCurve, ...) on a bad element; the input is peer-controlled.
    except Exception as exc:
        raise PairingError(f"SPAKE2 message refused: {type(exc).__name__}") from None
    return key


class JoinerPake:
    """The joiner's side (SPAKE2 A) of one pairing run; ``finish`` once."""

    def __init__(self, code: str, rng: Rng = os.urandom) -> None:
        self._spake = SPAKE2_A(code.encode("utf-8"), idA=ID_JOINER, idB=ID_HOST)
        self.message: bytes = self._spake.start()
        self._rng = rng
        self._finished = False

    def __repr__(self) -> str:
        return f"JoinerPake(finished={self._finished})"

    def finish(self, host_message: bytes) -> PakeKeys:
        """Finish the exchange with the host's message; PairingError if it is malformed."""
        if self._finished:
            raise RuntimeError("a JoinerPake finishes once; start a new run")
        self._finished = True
        key = _finish(self._spake, b"B", host_message)
        return PakeKeys.derive(key, self.message, host_message, self._rng)


def host_pake(code: str, joiner_message: bytes, rng: Rng = os.urandom) -> tuple[bytes, PakeKeys]:
    """The host's side (SPAKE2 B): return its outbound message and the derived keys."""
    spake = SPAKE2_B(code.encode("utf-8"), idA=ID_JOINER, idB=ID_HOST)
    host_message: bytes = spake.start()
    key = _finish(spake, b"A", joiner_message)
    return host_message, PakeKeys.derive(key, joiner_message, host_message, rng)


def possession_statement(transcript: bytes) -> bytes:
    """What the joiner signs with its Ed25519 key inside its sealed card: proof that it
    holds the private key of the identity it claims, bound to this one run."""
    return CONTEXT + b" card possession " + transcript


def b64e(data: bytes) -> str:
    """Standard base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def b64d(text: str, field: str, max_bytes: int = MAX_FIELD_BYTES) -> bytes:
    """Strict standard base64 to bytes; PairingError naming ``field`` on bad input."""
    if not isinstance(text, str):
        raise PairingError(f"{field}: expected a base64 string")
    if len(text) > 4 * ((max_bytes + 2) // 3):
        raise PairingError(f"{field}: longer than {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PairingError(f"{field}: not valid base64") from None
    if len(data) > max_bytes:
        raise PairingError(f"{field}: longer than {max_bytes} bytes")
    if b64e(data) != text:  # refuse non-canonical padding bits
        raise PairingError(f"{field}: not canonical base64")
    return data
