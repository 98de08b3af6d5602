"""Lease records: strict decoding, canonical signatures, and who may sign one."""

from __future__ import annotations

from dataclasses import replace

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.errors import ForgedLease, LeaseFromStranger, MalformedLease
from baton.core.identity import derive_machine_id
from baton.core.lease_record import LeaseRecord, check_record, sign_record


def signer(seed: int) -> Ed25519Signer:
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    return Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)


A, B = signer(1), signer(2)
MEMBERS = {s.machine_id: bytes(s._key.verify_key) for s in (A, B)}


def good(epoch: int = 3, nonce: int = 1) -> LeaseRecord:
    return sign_record(LeaseRecord(A.machine_id, epoch, nonce, 15000, 1.7e9), A)


def test_a_signed_record_round_trips_and_checks() -> None:
    record = good()
    assert LeaseRecord.decode(record.encode()) == record
    check_record(record, MEMBERS, verify_ed25519)
    assert not record.released and replace(record, ttl_ms=0).released


@pytest.mark.parametrize(
    "change",
    [
        {"epoch": 4},
        {"nonce": 2},
        {"ttl_ms": 1},
        {"issued_at": 1.8e9},
        {"holder": B.machine_id},
        {"in_sync": (B.machine_id,)},
    ],
)
def test_any_changed_field_breaks_the_signature(change: dict[str, object]) -> None:
    forged = replace(good(), **change)  # type: ignore[arg-type]
    with pytest.raises(ForgedLease):
        check_record(forged, MEMBERS, verify_ed25519)


def test_unsigned_strangers_and_revoked_holders_are_refused() -> None:
    with pytest.raises(ForgedLease, match="not signed"):
        check_record(replace(good(), signature=None), MEMBERS, verify_ed25519)
    with pytest.raises(LeaseFromStranger):
        check_record(good(), {B.machine_id: MEMBERS[B.machine_id]}, verify_ed25519)
    with pytest.raises(ForgedLease):  # B signing a record that names A as holder
        unsigned = LeaseRecord(A.machine_id, 3, 1, 15000, 1.7e9)
        check_record(
            replace(unsigned, signature=B.sign(unsigned.signable())), MEMBERS, verify_ed25519
        )
    with pytest.raises(ValueError):
        sign_record(LeaseRecord(A.machine_id, 1, 0, 1000, 0.0), B)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "x",
        {},
        {**good().to_dict(), "extra": 1},
        {**good().to_dict(), "epoch": 0},
        {**good().to_dict(), "epoch": True},
        {**good().to_dict(), "epoch": "1"},
        {**good().to_dict(), "epoch": 2**60},
        {**good().to_dict(), "nonce": -1},
        {**good().to_dict(), "ttl_ms": -5},
        {**good().to_dict(), "issued_at": float("nan")},
        {**good().to_dict(), "issued_at": "now"},
        {**good().to_dict(), "holder": "alice"},
        {**good().to_dict(), "signature": "!!"},
        {**good().to_dict(), "signature": "AAAA"},
        {**good().to_dict(), "signature": 5},
        {**good().to_dict(), "in_sync": []},  # empty: left out, never written
        {**good().to_dict(), "in_sync": "m_aaaaaaaaaaaaaaaa"},
        {**good().to_dict(), "in_sync": ["bob"]},
        {**good().to_dict(), "in_sync": [B.machine_id, B.machine_id]},
        {**good().to_dict(), "in_sync": ["m_bbbbbbbbbbbbbbbb", "m_aaaaaaaaaaaaaaaa"]},
        {**good().to_dict(), "in_sync": [A.machine_id]},  # the holder itself
        {
            **good().to_dict(),
            "in_sync": [f"m_{'a' * 15}{c}" for c in "abcdefghijklmnopqrstuvwxyz234567"] * 3,
        },
    ],
)
def test_malformed_records_are_refused_by_name(doc: object) -> None:
    with pytest.raises(MalformedLease):
        LeaseRecord.from_dict(doc)


@given(st.binary(max_size=300))
def test_decoding_any_bytes_gives_a_record_or_malformed(data: bytes) -> None:
    try:
        record = LeaseRecord.decode(data)
    except MalformedLease as exc:
        assert exc.detail  # refused with a reason; anything but MalformedLease fails
        return
    assert LeaseRecord.decode(record.encode()) == record


@pytest.mark.parametrize("depth", [65, 3_000, 50_000])
def test_a_deeply_nested_record_is_malformed_not_a_crash(depth: int) -> None:
    """Issue 16: a 3,000-deep lease.json raised RecursionError, read as "store
    unreachable" rather than garbage, so no machine ever replaced it."""
    for data in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(MalformedLease):
            LeaseRecord.decode(data.encode())


def test_the_in_sync_set_is_signed_and_an_empty_one_reads_like_a_record_without_it() -> None:
    with_b = sign_record(replace(good(), in_sync=(B.machine_id,), signature=None), A)
    assert LeaseRecord.decode(with_b.encode()) == with_b
    check_record(with_b, MEMBERS, verify_ed25519)
    assert with_b.to_dict()["in_sync"] == [B.machine_id]
    assert "in_sync" not in good().to_dict()  # a record of an older baton reads the same
    assert with_b.may_take_over(B.machine_id) and with_b.may_take_over(A.machine_id)
    assert not good().may_take_over(B.machine_id) and good().may_take_over(A.machine_id)
