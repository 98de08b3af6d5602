"""Component flags (issue 21, the core): only the names a component has, signed by the
holder a member's lease view names at that epoch, newest wins; a forged, a foreign, a
stale or a malformed change refused with a typed error."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.errors import (
    FeatureRefused,
    FlagsNotFromHolder,
    ForgedFlags,
    MalformedFlags,
    StaleFlags,
)
from baton.core.features import (
    COMPONENTS,
    CORE,
    SIGNED,
    FeatureFlags,
    check_name,
    judge,
    newer,
)
from baton.core.identity import derive_machine_id


def signer(seed: int) -> Ed25519Signer:
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    return Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)


HOLDER, MEMBER, STRANGER = signer(1), signer(2), signer(3)
KEYS = {s.machine_id: bytes(s._key.verify_key) for s in (HOLDER, MEMBER)}


def take(flags: FeatureFlags, current: FeatureFlags, holder: tuple[str | None, int]) -> None:
    judge(flags, current, holder=holder, members=KEYS, verify=verify_ed25519)


def set_at(epoch: int, *off: str, since: FeatureFlags | None = None) -> FeatureFlags:
    return (since or FeatureFlags()).changed(epoch, disabled=off).sign(HOLDER)


def test_every_component_has_a_flag_and_no_core_guarantee_has_one() -> None:
    assert {check_name(n) for n in COMPONENTS} == set(COMPONENTS)
    assert set(SIGNED) < set(COMPONENTS) and "pool" not in SIGNED
    for name in CORE:
        with pytest.raises(FeatureRefused, match="core guarantee"):
            check_name(name)
    with pytest.raises(FeatureRefused, match="no component is called 'warp'"):
        check_name("warp")


def test_the_holders_change_is_taken_and_a_newer_one_after_it() -> None:
    first = set_at(4, "state_sync")
    take(first, FeatureFlags(), (HOLDER.machine_id, 4))
    assert not first.enabled("state_sync") and first.enabled("secret_sync")
    second = set_at(4, since=first)
    assert (second.epoch, second.version) == (4, 2) and newer(second, first)
    take(second, first, (HOLDER.machine_id, 4))
    assert FeatureFlags.from_dict(json.loads(json.dumps(second.to_dict()))) == second


def test_a_replayed_or_older_change_is_stale() -> None:
    first = set_at(4, "state_sync")
    second = set_at(4, since=first)
    with pytest.raises(StaleFlags):
        take(first, second, (HOLDER.machine_id, 4))  # the old "off" replayed
    with pytest.raises(StaleFlags):
        take(second, second, (HOLDER.machine_id, 4))  # the same again


def test_a_deposed_holders_change_is_refused_and_a_new_holder_restamps() -> None:
    old = set_at(4, "secret_sync")
    with pytest.raises(FlagsNotFromHolder, match=r"sees .* hold at epoch 5"):
        take(old, FeatureFlags(), (MEMBER.machine_id, 5))
    restamped = old.changed(5).sign(MEMBER)  # the new holder makes them its own
    assert restamped.disabled == old.disabled and (restamped.epoch, restamped.version) == (5, 1)
    take(restamped, old, (MEMBER.machine_id, 5))


def test_tampered_foreign_and_unsigned_flags_are_forged() -> None:
    good = set_at(4, "state_sync")
    holder = (HOLDER.machine_id, 4)
    tampered = replace(good, disabled=frozenset({"state_sync", "secret_sync"}))
    with pytest.raises(ForgedFlags, match="not signed by its key"):
        take(tampered, FeatureFlags(), holder)
    bumped = replace(good, version=99)  # a replay made to look newer
    with pytest.raises(ForgedFlags):
        take(bumped, good, holder)
    stranger = FeatureFlags().changed(4, disabled=["state_sync"]).sign(STRANGER)
    with pytest.raises(ForgedFlags, match="not a member"):
        take(stranger, FeatureFlags(), (STRANGER.machine_id, 4))
    claimed = replace(stranger, signer=HOLDER.machine_id)  # signed by one, naming another
    with pytest.raises(ForgedFlags):
        take(claimed, FeatureFlags(), holder)
    with pytest.raises(ForgedFlags):
        take(replace(good, signature=None), FeatureFlags(), holder)


def doc(**change: Any) -> dict[str, Any]:
    return {**set_at(4, "state_sync").to_dict(), **change}


@pytest.mark.parametrize(
    "bad",
    [
        {"disabled": ["lease"]},  # a core guarantee has no flag
        {"disabled": ["pool"]},  # the pool's switch is its own
        {"disabled": ["state_sync", "state_sync"]},
        {"disabled": "state_sync"},
        {"disabled": [1]},
        {"epoch": True},
        {"epoch": -1},
        {"version": 2**63},
        {"version": 1.5},
        {"signer": 7},
        {"signer": "m" * 300},
        {"signature": "not base64!"},
        {"signature": "AAAA"},
        {"extra": 1},
    ],
)
def test_malformed_flags_are_refused_by_name(bad: dict[str, Any]) -> None:
    with pytest.raises(MalformedFlags):
        FeatureFlags.from_dict(doc(**bad))


@pytest.mark.parametrize("bad", [None, [], "flags", {"disabled": []}])
def test_a_document_that_is_not_flags_is_refused(bad: object) -> None:
    with pytest.raises(MalformedFlags):
        FeatureFlags.from_dict(bad)


@given(
    off=st.sets(st.sampled_from(SIGNED)),
    epoch=st.integers(0, 2**63 - 1),
    version=st.integers(0, 2**63 - 1),
)
def test_flags_round_trip_and_their_signature_covers_every_field(
    off: set[str], epoch: int, version: int
) -> None:
    flags = FeatureFlags(frozenset(off), epoch, version).sign(HOLDER)
    assert FeatureFlags.from_dict(json.loads(json.dumps(flags.to_dict()))) == flags
    assert flags.signature is not None
    assert verify_ed25519(KEYS[HOLDER.machine_id], flags.signable(), flags.signature)
    for other in (replace(flags, epoch=epoch ^ 1), replace(flags, version=version ^ 1)):
        assert not verify_ed25519(KEYS[HOLDER.machine_id], other.signable(), flags.signature)
