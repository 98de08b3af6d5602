"""Announcements in the registry (issue 17): each entry keeps its machine's newest
announcement, it survives the store, a roster keeps the newer one, and an announcement
in a roster must be signed by the machine it names."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from baton.adapters.signing import verify_ed25519
from baton.core.announce import Announcement, next_announcement, sign_announcement
from baton.core.errors import InvalidCard, NotFound, RosterRefused
from baton.core.registry import (
    MachineEntry,
    MachineRegistry,
    Role,
    Status,
    entry_from_card,
    open_registry,
    sign_entry,
)
from baton.stores.registry_store import MemoryRegistryStore
from tests.signers import ForeignSigner, identity, signer


def entry(nick: str, seed: int, **changes: object) -> MachineEntry:
    card = {**identity(nick, seed).to_dict(), "wire": "tcp://127.0.0.1:9000"}
    card["http"] = "http://127.0.0.1:9001"
    return replace(entry_from_card(card, 1.0), **changes)  # type: ignore[arg-type]


def announcement(seed: int, seq: int, *hosts: str, signed_by: object = None) -> Announcement:
    wire = tuple(f"tcp://{h}:8421" for h in hosts or ("192.168.1.7",))
    http = f"http://{hosts[0] if hosts else '192.168.1.7'}:8420"
    unsigned = Announcement(identity("x", seed).machine_id, seq, wire, http)
    return sign_announcement(unsigned, signed_by or signer(seed))  # type: ignore[arg-type]


ME, ALPHA, BRAVO = identity("laptop", 1), entry("alpha", 50, role=Role.AWAKE), entry("bravo", 70)


def standby() -> MachineRegistry:
    """This machine (laptop) as a standby in alpha's mesh, bravo the other member."""
    founded = open_registry(None, ME, "tcp://127.0.0.1:1", "http://127.0.0.1:2", 0.0)
    entries = {
        ME.machine_id: replace(founded.me, role=Role.STANDBY),
        ALPHA.machine_id: ALPHA,
        BRAVO.machine_id: BRAVO,
    }
    return MachineRegistry(ME.machine_id, entries).check()


def roster(reg: MachineRegistry, *entries: MachineEntry) -> MachineRegistry:
    """``entries`` as alpha, the awake member, sends and signs them, applied to ``reg``."""
    signed = [sign_entry(e, signer(50)) for e in entries]
    return reg.merge_roster(signed, ALPHA.machine_id, verify_ed25519)


# --- the entry ------------------------------------------------------------------------


def test_with_announcement_sets_wire_http_and_endpoints() -> None:
    a = announcement(70, 10, "10.0.0.5", "bravo.tail.ts.net", "[fd7a::5]")
    reg = standby().with_announcement(a)
    got = reg.get(BRAVO.machine_id)
    assert got.wire == "tcp://10.0.0.5:8421"
    assert got.http == "http://10.0.0.5:8420"
    assert (
        got.endpoints
        == a.wire
        == (
            "tcp://10.0.0.5:8421",
            "tcp://bravo.tail.ts.net:8421",
            "tcp://[fd7a::5]:8421",
        )
    )
    assert got.announcement == a and got.announced_seq == 10
    assert reg.announced() == {BRAVO.machine_id: 10}
    # the registry is a value: the one it came from still has bravo's paired endpoint
    assert standby().get(BRAVO.machine_id).endpoints == ("tcp://127.0.0.1:9000",)
    assert standby().announced() == {}


def test_with_announcement_of_a_stranger_is_not_found() -> None:
    with pytest.raises(NotFound):
        standby().with_announcement(announcement(90, 1))


def test_signing_keys_are_the_active_members_only() -> None:
    gone = replace(BRAVO, status=Status.REVOKED, revoked_at=5.0, revoked_reason="left")
    reg = replace(standby(), entries={**standby().entries, BRAVO.machine_id: gone})
    assert reg.signing_keys() == {
        ME.machine_id: ME.signing_public,
        ALPHA.machine_id: ALPHA.identity.signing_public,
    }


def test_an_entry_with_its_announcement_round_trips_through_json_and_the_store() -> None:
    reg = standby().with_announcement(announcement(70, 10, "10.0.0.5", "[fd7a::5]"))
    reg = reg.with_announcement(announcement(1, 3, "192.168.1.7")).signed(signer(1))
    for e in reg.entries.values():
        assert MachineEntry.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    store = MemoryRegistryStore()
    store.save(reg)
    assert store.load() == reg


def test_an_entry_carrying_another_machines_announcement_is_refused() -> None:
    doc = BRAVO.to_dict()
    doc["announcement"] = announcement(50, 10).to_dict()  # alpha's, inside bravo's entry
    with pytest.raises(InvalidCard):
        MachineEntry.from_dict(doc)


@pytest.mark.parametrize(
    "spoil",
    [
        {"seq": 0},
        {"wire": []},
        {"wire": ["udp://h:1"]},
        {"http": 7},
        {"signature": "AAAA"},
        {"extra": True},
    ],
)
def test_an_entry_with_a_malformed_announcement_is_refused(spoil: dict[str, object]) -> None:
    doc = BRAVO.to_dict()
    doc["announcement"] = {**announcement(70, 10).to_dict(), **spoil}
    with pytest.raises(InvalidCard):
        MachineEntry.from_dict(doc)


@pytest.mark.parametrize("value", ["tcp://10.0.0.5:8421", 7, ["x"]])
def test_an_entry_whose_announcement_is_no_object_is_refused(value: object) -> None:
    with pytest.raises(InvalidCard):
        MachineEntry.from_dict({**BRAVO.to_dict(), "announcement": value})


# --- rosters --------------------------------------------------------------------------


def test_a_roster_carrying_an_older_announcement_keeps_ours() -> None:
    ours = announcement(70, 10, "10.0.0.5", "[fd7a::5]")
    mine = standby().with_announcement(ours)
    merged = roster(mine, ALPHA, replace(BRAVO, announcement=announcement(70, 5, "10.9.9.9")))
    got = merged.get(BRAVO.machine_id)
    assert got.announcement == ours
    assert got.endpoints == ours.wire and got.wire == ours.wire[0] and got.http == ours.http


def test_a_roster_carrying_no_announcement_keeps_ours() -> None:
    ours = announcement(70, 10, "10.0.0.5")
    merged = roster(standby().with_announcement(ours), ALPHA, BRAVO)
    assert merged.get(BRAVO.machine_id).announcement == ours
    assert merged.get(BRAVO.machine_id).wire == "tcp://10.0.0.5:8421"


def test_a_roster_carrying_a_newer_announcement_wins() -> None:
    mine = standby().with_announcement(announcement(70, 10, "10.0.0.5"))
    newer = announcement(70, 20, "172.16.0.9", "bravo.lan")
    carried = replace(BRAVO, wire=newer.wire[0], http=newer.http, announcement=newer)
    merged = roster(mine, ALPHA, carried)
    got = merged.get(BRAVO.machine_id)
    assert got.announcement == newer and got.endpoints == newer.wire
    assert got.wire == "tcp://172.16.0.9:8421" and merged.announced()[BRAVO.machine_id] == 20


def test_a_roster_teaches_an_announcement_we_never_heard() -> None:
    heard = announcement(70, 4, "10.0.0.5")
    merged = roster(standby(), ALPHA, replace(BRAVO, announcement=heard))
    assert merged.get(BRAVO.machine_id).endpoints == heard.wire
    assert merged.announced() == {BRAVO.machine_id: 4}


@pytest.mark.parametrize(
    "spoiled",
    [
        announcement(70, 30, "10.6.6.6", signed_by=ForeignSigner(BRAVO.machine_id, 50)),
        announcement(70, 30, "10.6.6.6", signed_by=ForeignSigner(BRAVO.machine_id, 90)),
        replace(announcement(70, 30, "10.6.6.6"), signature=None),
        replace(announcement(70, 30, "10.6.6.6"), seq=31),  # changed after signing
        replace(announcement(70, 30, "10.6.6.6"), wire=("tcp://10.6.6.7:8421",)),
    ],
    ids=["signed-by-alpha", "signed-by-stranger", "unsigned", "seq-changed", "wire-changed"],
)
def test_a_roster_whose_announcement_is_not_self_signed_is_refused_whole(
    spoiled: Announcement,
) -> None:
    """Even the awake member, which signs the roster, cannot vouch for where another
    machine is: only that machine's own key can."""
    mine = standby().with_announcement(announcement(70, 10, "10.0.0.5"))
    charlie = entry("charlie", 60)
    with pytest.raises(RosterRefused):
        roster(mine, ALPHA, charlie, replace(BRAVO, announcement=spoiled))
    # and the same roster without the spoiled announcement is fine: only it was wrong
    merged = roster(mine, ALPHA, charlie, BRAVO)
    assert charlie.machine_id in merged.entries
    assert merged.get(BRAVO.machine_id).wire == "tcp://10.0.0.5:8421"


def test_a_roster_never_changes_our_own_announcement() -> None:
    ours = announcement(1, 10, "192.168.1.7")
    mine = standby().with_announcement(ours)
    me_in_roster = replace(mine.me, announcement=announcement(1, 99, "10.1.1.1"))
    merged = roster(mine, ALPHA, me_in_roster)
    assert merged.me.announcement == ours


# --- next_announcement ----------------------------------------------------------------

WIRE = ("tcp://192.168.1.7:8421", "tcp://[fd7a::1]:8421")
HTTP = "http://192.168.1.7:8420"


def test_the_first_announcement_follows_the_wall_clock() -> None:
    a = next_announcement(None, ME.machine_id, WIRE, HTTP, 1_700_000_000_000)
    assert a == Announcement(ME.machine_id, 1_700_000_000_000, WIRE, HTTP)
    assert a.signature is None  # the caller signs it


def test_unchanged_endpoints_need_no_announcement() -> None:
    last = sign_announcement(Announcement(ME.machine_id, 5, WIRE, HTTP), signer(1))
    assert next_announcement(last, ME.machine_id, WIRE, HTTP, 10**13) is None


@pytest.mark.parametrize(
    "wire, http",
    [
        (WIRE[::-1], HTTP),  # the same endpoints in another order is another announcement
        (WIRE[:1], HTTP),
        (WIRE, "http://192.168.1.7:8500"),
    ],
)
def test_changed_endpoints_grow_the_seq(wire: tuple[str, ...], http: str) -> None:
    last = sign_announcement(Announcement(ME.machine_id, 5_000, WIRE, HTTP), signer(1))
    later = next_announcement(last, ME.machine_id, wire, http, 9_000)
    assert later == Announcement(ME.machine_id, 9_000, wire, http)
    # a wall clock behind the last seq (restored backup, clock stepped back) still grows
    behind = next_announcement(last, ME.machine_id, wire, http, 1_000)
    assert behind is not None and behind.seq == 5_001
    same = next_announcement(last, ME.machine_id, wire, http, 5_000)
    assert same is not None and same.seq == 5_001
