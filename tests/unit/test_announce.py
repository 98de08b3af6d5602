"""Endpoint announcements (issue 17, the core): only from the machine they name, signed
by its key, newest wins; anything else refused with a typed error."""

from __future__ import annotations

import json
from dataclasses import replace

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.announce import Announcement, accept, sign_announcement
from baton.core.errors import ForgedAnnouncement, MalformedAnnouncement, StaleAnnouncement
from baton.core.identity import derive_machine_id


def signer(seed: int) -> Ed25519Signer:
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    return Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)


A, B, STRANGER = signer(1), signer(2), signer(3)
MEMBERS = {s.machine_id: bytes(s._key.verify_key) for s in (A, B)}


def announced(s: Ed25519Signer = A, seq: int = 5) -> Announcement:
    wire = ("tcp://192.168.1.7:8421", "tcp://laptop.tail1234.ts.net:8421", "tcp://[fd7a::1]:8421")
    return sign_announcement(Announcement(s.machine_id, seq, wire, "http://127.0.0.1:8420"), s)


def test_a_signed_announcement_round_trips_and_is_accepted() -> None:
    a = announced()
    again = Announcement.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a and again.wire[1].endswith("ts.net:8421")  # DNS names and IPv6 too
    accept(again, A.machine_id, MEMBERS, {A.machine_id: 4}, verify_ed25519)


def test_newest_wins_a_replayed_or_older_one_is_stale() -> None:
    for last in (5, 6):
        with pytest.raises(StaleAnnouncement):
            accept(announced(seq=5), A.machine_id, MEMBERS, {A.machine_id: last}, verify_ed25519)


@pytest.mark.parametrize(
    "a, sender",
    [
        (announced(A), B.machine_id),  # relayed by another member
        (announced(STRANGER), STRANGER.machine_id),  # not a member
        (replace(announced(A), signature=announced(B).signature), A.machine_id),  # B's sig
        (replace(announced(A), seq=6), A.machine_id),  # changed after signing
        (replace(announced(A), wire=("tcp://10.0.0.66:8421",)), A.machine_id),
        (replace(announced(A), signature=None), A.machine_id),
    ],
)
def test_forged_relayed_and_foreign_announcements_are_refused(a: Announcement, sender: str) -> None:
    with pytest.raises(ForgedAnnouncement):
        accept(a, sender, MEMBERS, {}, verify_ed25519)


def test_a_machine_cannot_sign_another_ones_announcement() -> None:
    with pytest.raises(ValueError):
        sign_announcement(Announcement(B.machine_id, 1, ("tcp://h:1",), "http://h:2"), A)


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 0}, {"seq": True}, {"seq": 2**63}, {"seq": "5"}, {"wire": []},
        {"wire": ["tcp://h:1"] * 9}, {"wire": ["udp://h:1"]}, {"wire": ["tcp://h:70000"]},
        {"wire": "tcp://h:1"}, {"http": "https://h:1"}, {"signature": "!!"},
        {"signature": "AAAA"}, {"machine_id": 7}, {"extra": 1},
        {"wire": ["tcp://0.0.0.0:8421"]}, {"wire": ["tcp://[::]:8421"]},
        {"http": "http://0.0.0.0:8422"},
    ],
)  # fmt: skip
def test_malformed_announcements_are_refused_by_name(change: dict[str, object]) -> None:
    with pytest.raises(MalformedAnnouncement):
        Announcement.from_dict({**announced().to_dict(), **change})


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c,
                                                                       max_size=6)))  # fmt: skip
def test_any_document_is_an_announcement_or_malformed(doc: object) -> None:
    try:
        Announcement.from_dict(doc)
    except MalformedAnnouncement as exc:
        assert exc.detail
