"""Versions (issue 21, the core): the mesh runs at the highest protocol version every
active member speaks; a machine that cannot speak it says why; what an operator is told
of the skew; versions in a signed announcement, strictly decoded, and an announcement
from before versions were announced still verifies."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.adapters.signing import verify_ed25519 as verify
from baton.build import THIS
from baton.core.announce import Announcement, accept, next_announcement, sign_announcement
from baton.core.errors import ForgedAnnouncement, MalformedAnnouncement
from baton.core.versions import LEGACY, Versions, cannot_speak, mesh_protocol, skew
from tests.unit.test_announce import MEMBERS, A, announced

OLD = Versions("0.1.0", (1, 1))
BOTH = Versions("0.2.0", (1, 2))
NEW = Versions("0.3.0", (2, 3))

ranges = st.tuples(st.integers(1, 6), st.integers(0, 4)).map(lambda t: (t[0], t[0] + t[1]))
members = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.one_of(st.none(), ranges.map(lambda r: Versions("1.0", r))),
    min_size=1,
)


@given(members)
def test_the_mesh_runs_at_the_highest_version_every_member_speaks(
    found: dict[str, Versions | None],
) -> None:
    mesh = mesh_protocol(found)
    spoken = [LEGACY if v is None else v.protocols for v in found.values()]
    assert any(hi == mesh for _, hi in spoken)  # some member speaks nothing higher
    assert all(mesh <= hi for _, hi in spoken)
    common = [p for p in range(1, 12) if all(lo <= p <= hi for lo, hi in spoken)]
    assert common == [] or mesh == max(common)  # when one is common to all, the highest
    for v in found.values():  # and each member that cannot speak it is told so
        if v is not None:
            assert (cannot_speak(v, mesh) is None) == v.speaks(mesh)


def test_a_rolling_upgrade_moves_the_mesh_up_only_once_every_member_speaks_the_new() -> None:
    assert mesh_protocol({"a": OLD, "b": OLD}) == 1
    assert mesh_protocol({"a": BOTH, "b": OLD}) == 1
    assert mesh_protocol({"a": BOTH, "b": BOTH}) == 2
    assert mesh_protocol({"a": BOTH, "b": None}) == 1  # one that never said: protocol 1
    assert mesh_protocol({}) == 1


def test_a_machine_that_cannot_speak_the_mesh_version_says_why() -> None:
    assert cannot_speak(BOTH, 1) is None and cannot_speak(BOTH, 2) is None
    why = cannot_speak(NEW, 1)
    assert why is not None and "0.3.0" in why and "2-3" in why and "protocol 1" in why


def test_skew_names_other_versions_the_unable_and_the_silent() -> None:
    names = {"a": "alpha", "b": "bravo", "c": "charlie"}
    assert skew("a", {"a": BOTH, "b": BOTH}, names) == []
    said = skew("a", {"a": BOTH, "b": OLD, "c": NEW}, names)
    assert said == [
        "bravo runs baton 0.1.0; this machine runs 0.2.0",
        "charlie (baton 0.3.0, protocols 2-3) cannot speak protocol 1, the one the mesh runs at",
    ]
    assert skew("a", {"a": BOTH, "b": None}, names) == [
        "bravo has not said its version (an older baton)"
    ]


@pytest.mark.parametrize(
    "doc",
    [
        {"version": "", "protocols": [1, 1]},
        {"version": "1.0 beta", "protocols": [1, 1]},
        {"version": "x" * 65, "protocols": [1, 1]},
        {"version": 1, "protocols": [1, 1]},
        {"version": "1.0", "protocols": [2, 1]},
        {"version": "1.0", "protocols": [0, 1]},
        {"version": "1.0", "protocols": [True, 1]},
        {"version": "1.0", "protocols": [1, 2**31]},
        {"version": "1.0", "protocols": [1]},
        {"version": "1.0", "protocols": "1-2"},
        {"version": "1.0", "protocols": [1.0, 2]},
    ],
)
def test_versions_decode_strictly(doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Versions.from_dict(doc)
    signed = {**announced().to_dict(), **doc}
    with pytest.raises(MalformedAnnouncement):
        Announcement.from_dict(signed)


def test_an_announcement_carries_its_versions_signed() -> None:
    a = sign_announcement(replace(announced(), signature=None, versions=BOTH), A)
    again = Announcement.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a and again.versions == BOTH
    accept(again, A.machine_id, MEMBERS, {}, verify)
    with pytest.raises(ForgedAnnouncement):  # a version changed on the way
        accept(replace(again, versions=NEW), A.machine_id, MEMBERS, {}, verify)
    half = {k: v for k, v in a.to_dict().items() if k != "protocols"}
    with pytest.raises(MalformedAnnouncement):
        Announcement.from_dict(half)


def test_an_announcement_from_before_versions_still_verifies() -> None:
    old = announced()
    doc = old.to_dict()
    assert "version" not in doc and "protocols" not in doc
    again = Announcement.from_dict(doc)
    assert again.versions is None
    accept(again, A.machine_id, MEMBERS, {}, verify)


def test_a_machine_announces_again_when_its_versions_change() -> None:
    last = announced()  # no versions: a home from before they were announced
    fresh = next_announcement(last, A.machine_id, last.wire, last.http, 0, versions=THIS)
    assert fresh is not None and fresh.versions == THIS and fresh.seq == last.seq + 1
    signed = sign_announcement(fresh, A)
    same = next_announcement(signed, A.machine_id, last.wire, last.http, 10, versions=THIS)
    assert same is None
    other = next_announcement(signed, A.machine_id, last.wire, last.http, 10, versions=BOTH)
    assert other is not None and other.versions == BOTH
