"""The pure side of machine identity: ids, nicknames, fingerprints, the card."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.errors import InvalidCard, InvalidNickname
from baton.core.identity import (
    PublicIdentity,
    derive_machine_id,
    fingerprint,
    validate_nickname,
)

KEYS = st.binary(min_size=32, max_size=32)
SIGN = bytes(range(32))
ENC = bytes(range(32, 64))


def card(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = PublicIdentity.from_keys("laptop", SIGN, ENC).to_dict()
    d.update(over)
    return d


# --- derive_machine_id -------------------------------------------------------


def test_machine_id_known_value() -> None:
    digest = hashlib.sha256(SIGN).digest()
    expected = "m_" + base64.b32encode(digest).decode().lower()[:16]
    assert derive_machine_id(SIGN) == expected


@given(KEYS)
def test_machine_id_deterministic_and_well_formed(key: bytes) -> None:
    mid = derive_machine_id(key)
    assert mid == derive_machine_id(bytes(key))
    assert re.fullmatch(r"m_[a-z2-7]{16}", mid)


@given(KEYS, KEYS)
def test_machine_id_differs_for_different_keys(a: bytes, b: bytes) -> None:
    if a != b:
        assert derive_machine_id(a) != derive_machine_id(b)


@pytest.mark.parametrize("size", [0, 31, 33])
def test_machine_id_refuses_wrong_key_size(size: int) -> None:
    with pytest.raises(ValueError):
        derive_machine_id(b"\x01" * size)


# --- validate_nickname -------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "laptop", "mini-2", "a-b-c", "x" * 32, "m1"])
def test_valid_nicknames(name: str) -> None:
    assert validate_nickname(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 33, "Laptop", "1mini", "-mini", "mini-", "mini_2", "mini 2", "mïni", "mini\n"],
)
def test_invalid_nicknames(name: str) -> None:
    with pytest.raises(InvalidNickname) as info:
        validate_nickname(name)
    assert repr(name) in info.value.detail
    assert "starting with a letter" in info.value.detail


def test_non_string_nickname_refused() -> None:
    with pytest.raises(InvalidNickname):
        validate_nickname(42)  # type: ignore[arg-type]


# --- fingerprint -------------------------------------------------------------


def test_fingerprint_like_ssh() -> None:
    fp = fingerprint(SIGN)
    digest = hashlib.sha256(SIGN).digest()
    assert fp == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    assert not fp.endswith("=")
    assert len(fp) == len("SHA256:") + 43


# --- PublicIdentity ----------------------------------------------------------


def test_round_trip() -> None:
    pub = PublicIdentity.from_keys("laptop", SIGN, ENC)
    d = pub.to_dict()
    assert set(d) == {"machine_id", "nickname", "signing_public", "encryption_public"}
    assert d["signing_public"] == base64.b64encode(SIGN).decode()
    assert d["signing_public"].endswith("=")  # standard base64 with padding
    assert PublicIdentity.from_dict(d) == pub
    assert pub.machine_id == derive_machine_id(SIGN)


@given(KEYS, KEYS)
def test_round_trip_any_keys(sign: bytes, enc: bytes) -> None:
    pub = PublicIdentity.from_keys("n", sign, enc)
    assert PublicIdentity.from_dict(pub.to_dict()) == pub


def test_frozen() -> None:
    pub = PublicIdentity.from_keys("laptop", SIGN, ENC)
    with pytest.raises(AttributeError):
        pub.nickname = "other"  # type: ignore[misc]


BAD_CARDS: list[tuple[str, dict[str, Any]]] = [
    ("machine_id", card(machine_id="m_aaaaaaaaaaaaaaaa")),
    ("machine_id", card(machine_id=7)),
    ("nickname", card(nickname="Bad Name")),
    ("nickname", card(nickname=None)),
    ("signing_public", card(signing_public="not base64!")),
    ("signing_public", card(signing_public=base64.b64encode(b"x" * 31).decode())),
    ("signing_public", card(signing_public=list(SIGN))),
    ("signing_public", card(signing_public=base64.b64encode(SIGN).decode().rstrip("="))),
    ("encryption_public", card(encryption_public=base64.b64encode(b"x" * 33).decode())),
    ("encryption_public", card(encryption_public=base64.urlsafe_b64encode(b"\xff" * 32).decode())),
    ("surprise", card(surprise=1)),
]


@pytest.mark.parametrize(("field", "d"), BAD_CARDS)
def test_from_dict_rejects(field: str, d: dict[str, Any]) -> None:
    with pytest.raises(InvalidCard) as info:
        PublicIdentity.from_dict(d)
    assert info.value.detail.startswith(field)


@pytest.mark.parametrize(
    "missing", ["machine_id", "nickname", "signing_public", "encryption_public"]
)
def test_from_dict_rejects_missing_field(missing: str) -> None:
    d = card()
    del d[missing]
    with pytest.raises(InvalidCard, match=rf"^{missing}: missing"):
        PublicIdentity.from_dict(d)


def test_non_canonical_base64_rejected() -> None:
    text = base64.b64encode(SIGN).decode()
    # flip the unused low bits of the last base64 digit before the padding
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-2])
    sloppy = text[:-2] + alphabet[last | 0b11] + "="
    assert sloppy != text
    assert base64.b64decode(sloppy) == SIGN
    with pytest.raises(InvalidCard, match=r"^signing_public"):
        PublicIdentity.from_dict(card(signing_public=sloppy))


def test_extra_keys_allowed_only_when_listed() -> None:
    d = card(created_at="2024-01-01T00:00:00Z")
    with pytest.raises(InvalidCard, match=r"^created_at"):
        PublicIdentity.from_dict(d)
    assert PublicIdentity.from_dict(d, extra_ok=("created_at",)).nickname == "laptop"


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(InvalidCard):
        PublicIdentity.from_dict(["machine_id"])  # type: ignore[arg-type]


def test_constructor_refuses_inconsistent_identity() -> None:
    with pytest.raises(InvalidCard, match=r"^machine_id"):
        PublicIdentity("m_aaaaaaaaaaaaaaaa", "laptop", SIGN, ENC)
    with pytest.raises(InvalidCard, match=r"^encryption_public"):
        PublicIdentity(derive_machine_id(SIGN), "laptop", SIGN, b"short")
