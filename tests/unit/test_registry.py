from __future__ import annotations

from dataclasses import replace

import nacl.public
import nacl.signing
import pytest

from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.errors import HomeError, InvalidCard, NicknameTaken, NotFound, PairingError
from baton.core.identity import PublicIdentity
from baton.core.registry import (
    MachineEntry,
    MachineRegistry,
    Role,
    Status,
    entry_from_card,
    open_registry,
    sign_entry,
)
from baton.stores.registry_store import JsonRegistryStore, MemoryRegistryStore


def identity(nick: str, seed: int) -> PublicIdentity:
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    ek = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
    return PublicIdentity.from_keys(nick, bytes(sk.verify_key), bytes(ek.public_key))


def card(nick: str, seed: int, port: int = 9000) -> dict[str, object]:
    return {
        **identity(nick, seed).to_dict(),
        "wire": f"tcp://127.0.0.1:{port}",
        "http": f"http://127.0.0.1:{port + 1}",
    }


ME = identity("laptop", 1)


def founded() -> MachineRegistry:
    return open_registry(None, ME, "tcp://127.0.0.1:1", "http://127.0.0.1:2", 100.0)


def test_a_new_registry_has_this_machine_awake_and_no_peers() -> None:
    reg = founded()
    assert reg.me.role is Role.AWAKE and reg.me.status is Status.ACTIVE
    assert reg.active_peers() == []


def test_added_cards_become_active_standby_peers() -> None:
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    [peer] = reg.active_peers()
    assert (peer.nickname, peer.role, peer.status) == ("mini", Role.STANDBY, Status.ACTIVE)


def test_adding_again_refreshes_endpoints_but_keeps_role_and_age() -> None:
    reg = founded().add(entry_from_card(card("mini", 10, 9000), 5.0))
    reg = reg.add(entry_from_card(card("mini", 10, 9100), 50.0))
    [peer] = reg.active_peers()
    assert peer.wire == "tcp://127.0.0.1:9100" and peer.added_at == 5.0


def test_nickname_clash_is_refused_and_changes_nothing() -> None:
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    with pytest.raises(NicknameTaken):
        reg.add(entry_from_card(card("mini", 20), 6.0))
    assert [p.nickname for p in reg.active_peers()] == ["mini"]


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda c: c.pop("wire"), "wire"),
        (lambda c: c.update(wire="udp://x:1"), "wire"),
        (lambda c: c.update(http="http://h:99999"), "http"),
        (lambda c: c.update(machine_id="m_aaaaaaaaaaaaaaaa"), "machine_id"),
        (lambda c: c.update(extra=1), "extra"),
    ],
)
def test_bad_cards_are_refused(mutate: object, field: str) -> None:
    c = card("mini", 10)
    mutate(c)  # type: ignore[operator]
    with pytest.raises(InvalidCard) as info:
        entry_from_card(c, 0.0)
    assert field in info.value.detail


def test_unknown_machine_is_not_found() -> None:
    with pytest.raises(NotFound):
        founded().get("m_zzzzzzzzzzzzzzzz")


def test_a_registry_of_another_machine_is_refused() -> None:
    other = open_registry(None, identity("desk", 30), "tcp://h:1", "http://h:2", 0.0)
    with pytest.raises(InvalidCard):
        open_registry(other, ME, "tcp://h:1", "http://h:2", 0.0)


@pytest.mark.parametrize("make", [MemoryRegistryStore, None])
def test_store_round_trip(make: object, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = MemoryRegistryStore() if make else JsonRegistryStore(tmp_path / "registry.json")
    assert store.load() is None
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    store.save(reg)
    assert store.load() == reg


def test_a_corrupt_registry_file_is_refused_and_left_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "registry.json"
    for garbage in (
        b"",
        b"{not json",
        b'{"format": 2}',
        b'{"format": 1, "self_id": "m_x", "machines": []}',
    ):
        path.write_bytes(garbage)
        with pytest.raises(HomeError) as info:
            JsonRegistryStore(path).load()
        assert str(path) in info.value.detail
        assert path.read_bytes() == garbage


def test_a_card_reusing_another_machines_encryption_key_is_refused() -> None:
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    mini_key = reg.active_peers()[0].identity.encryption_public
    sk = nacl.signing.SigningKey(bytes([40]) * 32)
    thief = PublicIdentity.from_keys("thief", bytes(sk.verify_key), mini_key)
    thief_card = {**thief.to_dict(), "wire": "tcp://127.0.0.1:7", "http": "http://127.0.0.1:8"}
    with pytest.raises(InvalidCard) as info:
        reg.add(entry_from_card(thief_card, 6.0))
    assert "encryption_public" in info.value.detail
    mine = PublicIdentity.from_keys("me-too", bytes(sk.verify_key), ME.encryption_public)
    with pytest.raises(InvalidCard):
        reg.add(entry_from_card({**mine.to_dict(), "wire": "tcp://h:1", "http": "http://h:2"}, 0))


def test_a_registry_file_breaking_the_invariants_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    path = tmp_path / "registry.json"
    JsonRegistryStore(path).save(founded().add(entry_from_card(card("mini", 10), 5.0)))
    doc = json.loads(path.read_text())
    doc["machines"][1]["encryption_public"] = doc["machines"][0]["encryption_public"]
    path.write_text(json.dumps(doc))
    with pytest.raises(HomeError, match="already the key"):
        JsonRegistryStore(path).load()


def signed(*entries: MachineEntry, seed: int = 50) -> list[MachineEntry]:
    """Entries as the awake member "alpha" (key seed 50) vouches for them."""
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    signer = Ed25519Signer(identity("alpha", seed).machine_id, key)
    return [sign_entry(e, signer) for e in entries]


def merge(reg: MachineRegistry, awake: MachineEntry, *entries: MachineEntry) -> MachineRegistry:
    return reg.merge_roster(signed(*entries), awake.machine_id, verify_ed25519)


def _entry(nick: str, seed: int, **changes: object) -> MachineEntry:
    return replace(entry_from_card(card(nick, seed), 1.0), **changes)  # type: ignore[arg-type]


def test_a_roster_from_the_awake_member_teaches_new_members() -> None:
    awake = _entry("alpha", 50, role=Role.AWAKE)
    mine = open_registry(None, ME, "tcp://h:1", "http://h:2", 0.0)
    mine = mine.add(awake)
    mine = merge(mine, awake, awake, _entry("charlie", 60))
    assert sorted(e.nickname for e in mine.entries.values()) == ["alpha", "charlie", "laptop"]


def test_a_roster_from_anyone_but_the_awake_member_is_refused() -> None:
    from baton.core.errors import RosterRefused

    standby = _entry("bravo", 70)
    mine = founded().add(standby)
    with pytest.raises(RosterRefused):
        merge(mine, standby, _entry("mallory", 80))
    with pytest.raises(RosterRefused):
        mine.merge_roster([], "m_zzzzzzzzzzzzzzzz", verify_ed25519)


def test_a_roster_never_unrevokes_and_never_touches_our_own_entry() -> None:
    awake = _entry("alpha", 50, role=Role.AWAKE)
    gone = _entry("bravo", 70, status=Status.REVOKED, revoked_at=5.0, revoked_reason="left")
    base = open_registry(None, ME, "tcp://h:1", "http://h:2", 0.0)
    mine = MachineRegistry(
        base.self_id, {**base.entries, awake.machine_id: awake, gone.machine_id: gone}
    )
    me_as_awake = _entry("laptop", 1, role=Role.AWAKE)
    merged = mine.merge_roster(
        signed(_entry("bravo", 70), me_as_awake), awake.machine_id, verify_ed25519
    )
    assert merged.get(gone.machine_id).status is Status.REVOKED
    assert merged.me == mine.me


def test_a_roster_breaking_the_invariants_is_refused_whole() -> None:
    from baton.core.errors import RosterRefused

    awake = _entry("alpha", 50, role=Role.AWAKE)
    mine = founded().add(awake)
    with pytest.raises(RosterRefused):
        mine.merge_roster(
            signed(_entry("delta", 90), _entry("laptop", 91)), awake.machine_id, verify_ed25519
        )


def test_revocation_sticks_until_a_fresh_pairing() -> None:
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    mini = reg.find("mini")
    gone = reg.revoke(mini.machine_id, 100.0, "removed by laptop")
    entry = gone.get(mini.machine_id)
    assert (entry.status, entry.revoked_at, entry.revoked_reason) == (
        Status.REVOKED,
        100.0,
        "removed by laptop",
    )
    assert gone.active_peers() == []
    assert gone.revoke(mini.machine_id, 200.0, "again").get(mini.machine_id) == entry
    with pytest.raises(InvalidCard):
        gone.add(entry_from_card(card("mini", 10), 150.0))  # a replayed card
    back = gone.add(entry_from_card(card("mini", 10), 150.0), readmit=True)
    assert back.get(mini.machine_id).status is Status.ACTIVE


def test_a_readmission_is_later_than_its_revocation_whatever_the_clock_says() -> None:
    """After a failover the awake machine's wall clock may be behind the one that
    revoked; the re-admission still orders after the revocation everywhere."""
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    mini = reg.find("mini")
    gone = reg.revoke(mini.machine_id, 1000.0, "removed")
    back = gone.add(entry_from_card(card("mini", 10), 400.0), readmit=True).get(mini.machine_id)
    assert back.status is Status.ACTIVE and back.added_at > 1000.0
    awake = _entry("alpha", 50, role=Role.AWAKE)
    peer = founded().add(awake).add(entry_from_card(card("mini", 10), 5.0))
    peer = peer.revoke(mini.machine_id, 1000.0, "removed")
    assert merge(peer, awake, back).get(mini.machine_id).status is Status.ACTIVE


def test_a_revoked_machines_nickname_is_free_for_a_new_machine() -> None:
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    old = reg.find("mini")
    reg = reg.revoke(old.machine_id, 100.0, "lost")
    reg = reg.add(entry_from_card(card("mini", 20), 150.0))
    new = reg.find("mini")
    assert new.machine_id != old.machine_id and new.status is Status.ACTIVE
    assert reg.find(old.machine_id).status is Status.REVOKED
    assert [p.machine_id for p in reg.active_peers()] == [new.machine_id]
    with pytest.raises(NicknameTaken):  # but two active machines never share one
        reg.add(entry_from_card(card("mini", 30), 160.0))
    with pytest.raises(NicknameTaken):  # the old one cannot come back under a taken name
        reg.add(entry_from_card(card("mini", 10), 170.0), readmit=True)
    assert reg.check() is reg


def test_a_roster_replaying_an_old_entry_does_not_unrevoke() -> None:
    awake = _entry("alpha", 50, role=Role.AWAKE)
    mine = founded().add(awake).add(entry_from_card(card("mini", 10), 5.0))
    mini = mine.find("mini")
    mine = mine.revoke(mini.machine_id, 100.0, "removed")
    replay = replace(mini, added_at=5.0)
    assert merge(mine, awake, replay).find("mini").status is Status.REVOKED
    fresh = replace(mini, added_at=120.0)
    assert merge(mine, awake, fresh).find("mini").status is Status.ACTIVE


def test_revoke_refuses_ourselves_the_awake_member_and_strangers() -> None:
    from baton.core.errors import BadRequest

    awake = _entry("alpha", 50, role=Role.AWAKE)
    reg = founded().add(awake)
    with pytest.raises(BadRequest):
        reg.revoke(ME.machine_id, 1.0, "x")
    with pytest.raises(BadRequest):
        reg.revoke(awake.machine_id, 1.0, "x")
    with pytest.raises(NotFound):
        reg.revoke("m_zzzzzzzzzzzzzzzz", 1.0, "x")


@pytest.mark.parametrize("spoil", ["unsigned", "other_key", "tampered"])
def test_a_roster_entry_not_signed_by_the_awake_member_refuses_the_roster(spoil: str) -> None:
    from baton.core.errors import RosterRefused

    awake = _entry("alpha", 50, role=Role.AWAKE)
    mine = founded().add(awake)
    [good] = signed(_entry("charlie", 60))
    bad = {
        "unsigned": replace(good, signature=None),
        "other_key": signed(_entry("charlie", 60), seed=99)[0],
        "tampered": replace(good, wire="tcp://10.0.0.9:1"),
    }[spoil]
    with pytest.raises(RosterRefused, match="not signed"):
        mine.merge_roster([bad], awake.machine_id, verify_ed25519)
    assert mine.merge_roster([good], awake.machine_id, verify_ed25519).find("charlie")


def test_signatures_survive_the_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "registry.json"
    reg = MachineRegistry(ME.machine_id, {e.machine_id: e for e in signed(founded().me)})
    JsonRegistryStore(path).save(reg)
    loaded = JsonRegistryStore(path).load()
    assert loaded == reg and loaded.me.signature is not None  # type: ignore[union-attr]


def test_bad_membership_signatures_are_refused_not_crashed() -> None:
    from baton.pairing.membership import LeaveRefused, sign_leave, verify_leave

    key = nacl.signing.SigningKey(bytes([10]) * 32)
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    mini = reg.find("mini")
    good = sign_leave(key, mini.machine_id, ME.machine_id, mini.added_at)
    verify_leave(good, ME.machine_id, mini)
    for sig in ("AAAA", "", "!!"):
        with pytest.raises((LeaveRefused, PairingError)):
            verify_leave({**good, "signature": sig}, ME.machine_id, mini)


def test_a_leave_is_accepted_again_for_its_own_revoked_pairing_only() -> None:
    """`baton leave` can be retried after a lost answer or a `machines remove`; a
    captured leave never revokes a later pairing of the same machine."""
    from baton.pairing.membership import LeaveRefused, sign_leave, verify_leave

    key = nacl.signing.SigningKey(bytes([10]) * 32)
    reg = founded().add(entry_from_card(card("mini", 10), 5.0))
    mini = reg.find("mini")
    request = sign_leave(key, mini.machine_id, ME.machine_id, mini.added_at)
    gone = reg.revoke(mini.machine_id, 100.0, "left the mesh")
    verify_leave(request, ME.machine_id, gone.get(mini.machine_id))  # the retry is accepted
    back = gone.add(entry_from_card(card("mini", 10), 150.0), readmit=True)
    with pytest.raises(LeaveRefused, match="earlier pairing"):
        verify_leave(request, ME.machine_id, back.get(mini.machine_id))
