"""A machine's public identity: machine_id, nickname, key fingerprints, the card.

Invariants:
- Pure: standard library only, no I/O, no clock, no randomness.
- machine_id is a function of the Ed25519 signing public key alone:
  ``m_`` + the first 16 chars of lowercase, unpadded base32 of its SHA-256.
- A PublicIdentity that exists is valid: both keys are 32 bytes, the nickname
  follows the rules and machine_id matches the signing key. Constructing an
  invalid one raises InvalidCard, so no code downstream re-checks.
- from_dict is strict: exact JSON types, canonical base64, no unknown keys
  unless the caller names them. Every failure is an InvalidCard naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from baton.core.errors import InvalidCard, InvalidNickname

KEY_BYTES = 32
MACHINE_ID_CHARS = 16
NICKNAME_MAX = 32

_NICKNAME_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?", re.ASCII)
_CARD_FIELDS = ("machine_id", "nickname", "signing_public", "encryption_public")


def derive_machine_id(signing_public: bytes) -> str:
    """``m_`` + 16 chars of lowercase unpadded base32 of SHA-256(signing public key)."""
    if len(signing_public) != KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is {KEY_BYTES} bytes, got {len(signing_public)}")
    digest = hashlib.sha256(signing_public).digest()
    return "m_" + base64.b32encode(digest).decode("ascii").lower()[:MACHINE_ID_CHARS]


def validate_nickname(name: str) -> str:
    """Return ``name`` if it is a valid nickname, else raise InvalidNickname.

    Rule: 1 to 32 characters; lowercase ascii letters, digits and '-'; starts
    with a letter; does not end with '-'.
    """
    if not isinstance(name, str) or not _NICKNAME_RE.fullmatch(name):
        raise InvalidNickname(
            f"nickname {name!r} is invalid: use 1 to {NICKNAME_MAX} characters of "
            "lowercase ascii letters, digits and '-', starting with a letter and "
            "not ending with '-' (e.g. 'laptop', 'mini-2')"
        )
    return name


def fingerprint(public_key: bytes) -> str:
    """``SHA256:`` + unpadded standard base64 of SHA-256 of the key, like ssh-keygen -l."""
    digest = hashlib.sha256(public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class PublicIdentity:
    """What a machine shows others: id, nickname, signing and encryption public keys."""

    machine_id: str
    nickname: str
    signing_public: bytes
    encryption_public: bytes

    def __post_init__(self) -> None:
        for name in ("signing_public", "encryption_public"):
            value = getattr(self, name)
            if type(value) is not bytes or len(value) != KEY_BYTES:
                raise InvalidCard(f"{name}: must be {KEY_BYTES} bytes")
        try:
            validate_nickname(self.nickname)
        except InvalidNickname as exc:
            raise InvalidCard(f"nickname: {exc.detail}") from None
        expected = derive_machine_id(self.signing_public)
        if self.machine_id != expected:
            raise InvalidCard(
                f"machine_id: {self.machine_id!r} does not match the signing key "
                f"(expected {expected!r})"
            )

    @classmethod
    def from_keys(
        cls, nickname: str, signing_public: bytes, encryption_public: bytes
    ) -> PublicIdentity:
        """Build the identity of a new machine, deriving its machine_id."""
        if type(signing_public) is not bytes or len(signing_public) != KEY_BYTES:
            raise InvalidCard(f"signing_public: must be {KEY_BYTES} bytes")
        return cls(derive_machine_id(signing_public), nickname, signing_public, encryption_public)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready card; keys as standard base64 with padding."""
        return {
            "machine_id": self.machine_id,
            "nickname": self.nickname,
            "signing_public": base64.b64encode(self.signing_public).decode("ascii"),
            "encryption_public": base64.b64encode(self.encryption_public).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], extra_ok: Collection[str] = ()) -> PublicIdentity:
        """Parse a card strictly; raise InvalidCard naming the first bad field.

        Keys outside the four card fields are refused unless listed in
        ``extra_ok`` (their values are the caller's to check).
        """
        if not isinstance(d, Mapping):
            raise InvalidCard(f"card: expected a JSON object, got {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in _CARD_FIELDS and k not in extra_ok)
        if unknown:
            raise InvalidCard(f"{unknown[0]}: unknown field (unknown: {', '.join(unknown)})")
        strings = {name: _string_field(d, name) for name in _CARD_FIELDS}
        signing = _key_field("signing_public", strings["signing_public"])
        encryption = _key_field("encryption_public", strings["encryption_public"])
        return cls(strings["machine_id"], strings["nickname"], signing, encryption)


def _string_field(d: Mapping[str, Any], name: str) -> str:
    if name not in d:
        raise InvalidCard(f"{name}: missing")
    value = d[name]
    if type(value) is not str:
        raise InvalidCard(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _key_field(name: str, text: str) -> bytes:
    """Decode canonical standard base64 of exactly KEY_BYTES bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCard(f"{name}: not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise InvalidCard(f"{name}: decodes to {len(raw)} bytes, expected {KEY_BYTES}")
    if base64.b64encode(raw).decode("ascii") != text:
        raise InvalidCard(f"{name}: not canonical base64")
    return raw
