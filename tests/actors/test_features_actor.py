"""FeaturesActor with real homes, real Ed25519 keys and envelopes through the wire's
encoding (issue 21): the holder's change reaches every member and their gates; the
flags survive a restart in a 0600 file; a new holder restamps them; a forged, a stale,
a foreign or a malformed change is refused, counted, and changes nothing; only the
holder changes a flag, and a core guarantee has none. And the components obey their
gates: SecretSync neither tells nor takes while off, StateSync's handoff step answers
at once."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pykka
import pytest

from baton.actors.features_actor import (
    FeatureGate,
    FeaturesActor,
    GetFeatures,
    SetFeature,
)
from baton.actors.messages import MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.errors import FeatureNotHolder, FeatureRefused
from baton.core.features import FeatureFlags
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.registry import MachineEntry
from baton.stores.features_file import FeatureFlagsFile
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity, create_home
from baton.wire.envelope import make_envelope
from tests.actors.envelope_net import Net, entry_of
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)

NOW = 1_800_000_000.0


class Member:
    def __init__(self, root: Path, name: str, net: Net) -> None:
        self.root = root / name
        self.identity: MachineIdentity = create_home(self.root, name)
        self.id = self.identity.machine_id
        self.counters = Counters()
        self.gate = FeatureGate()
        self.net = net
        self.now_ms = 0.0
        self.actor = self.start()

    def start(self) -> pykka.ActorRef[Any]:
        return FeaturesActor.start(
            self.id,
            store=FeatureFlagsFile(HomePaths(self.root).features),
            gate=self.gate,
            send=self.net.send,
            signer=self.signer(),
            verify=verify_ed25519,
            counters=self.counters,
            rng=os.urandom,
        )

    def signer(self) -> Ed25519Signer:
        return Ed25519Signer(self.id, self.identity.signing_key)

    def entry(self) -> MachineEntry:
        return entry_of(self.identity, NOW - 100)

    def tick(self, ms: float = 100) -> None:
        self.now_ms += ms
        self.actor.ask(Tick(self.now_ms), timeout=30)

    def view(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.actor.ask(GetFeatures(), timeout=30)
        return answer


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[Member, Member, Member]]:
    net = Net()
    members = [Member(tmp_path, n, net) for n in ("alpha", "bravo", "charlie")]
    net.members = {m.id: m for m in members}
    try:
        for m in members:
            m.actor.ask(MembersChanged(tuple(o.entry() for o in members if o is not m)))
        lead(members, members[0], 3)
        yield members[0], members[1], members[2]
    finally:
        pykka.ActorRegistry.stop_all(timeout=30)


def lead(members: list[Member] | tuple[Member, ...], holder: Member, epoch: int) -> None:
    """``holder`` takes the lease at ``epoch`` and every member hears it, the holder
    last (the flags it restamps and sends at once meet views that know it)."""
    for m in sorted(members, key=lambda m: m is holder):
        phase = Phase.HOLDING if m is holder else Phase.STANDBY
        m.actor.ask(LeaseChanged(phase, holder.id, epoch, "test"))


def flags_of(m: Member) -> dict[str, bool]:
    return dict(m.view()["flags"])


def test_the_holders_change_reaches_every_member_and_survives_a_restart(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, charlie = mesh
    said = alpha.actor.ask(SetFeature("state_sync", False), timeout=30)
    assert said["flags"] == {"state_sync": False, "secret_sync": True}
    assert not alpha.gate.enabled("state_sync")
    for m in (bravo, charlie):
        wait_for(lambda m=m: not m.gate.enabled("state_sync"), 30, f"{m.id} to take it")
        assert m.gate.enabled("secret_sync") and m.counters.get("features.kept") >= 1
        view = m.view()
        assert (view["set_by"], view["epoch"], view["holder"]) == (alpha.id, 3, False)
    path = HomePaths(bravo.root).features
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    bravo.actor.stop()
    bravo.gate = FeatureGate()
    bravo.actor = bravo.start()
    assert flags_of(bravo) == {"state_sync": False, "secret_sync": True}
    assert not bravo.gate.enabled("state_sync")


def test_the_holder_resends_so_a_member_that_missed_it_catches_up(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, _ = mesh
    alpha.net.members.pop(bravo.id)  # bravo is cut off while the change is made
    alpha.actor.ask(SetFeature("secret_sync", False), timeout=30)
    alpha.net.members[bravo.id] = bravo
    assert bravo.gate.enabled("secret_sync")
    alpha.tick(6000)  # the resend
    wait_for(lambda: not bravo.gate.enabled("secret_sync"), 30, "bravo to catch up")
    before = bravo.counters.snapshot()
    alpha.tick(6000)  # the same again: taken silently, nothing refused
    bravo.view()
    assert not any(k.startswith("features.refused") for k in bravo.counters.snapshot()), before


def test_only_the_holder_changes_a_flag_and_a_core_guarantee_has_none(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, _ = mesh
    with pytest.raises(FeatureNotHolder, match="only the awake machine"):
        bravo.actor.ask(SetFeature("state_sync", False), timeout=30)
    for name, why in (("lease", "core guarantee"), ("warp", "no component"), ("pool", "own")):
        with pytest.raises(FeatureRefused, match=why):
            alpha.actor.ask(SetFeature(name, False), timeout=30)
    assert flags_of(alpha) == flags_of(bravo) == {"state_sync": True, "secret_sync": True}


def test_a_new_holder_makes_the_flags_its_own_and_the_old_ones_changes_are_refused(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, charlie = mesh
    alpha.actor.ask(SetFeature("state_sync", False), timeout=30)
    wait_for(lambda: not charlie.gate.enabled("state_sync"), 30, "charlie to take it")
    bravo.actor.ask(LeaseChanged(Phase.HOLDING, bravo.id, 4, "test"))  # before the others know
    for m in (alpha, charlie):
        m.actor.ask(LeaseChanged(Phase.STANDBY, bravo.id, 4, "test"))
    wait_for(lambda: charlie.view()["set_by"] == bravo.id, 30, "charlie to take bravo's")
    assert charlie.view()["epoch"] == 4 and not charlie.gate.enabled("state_sync")
    assert charlie.counters.get("features.ahead") == 1  # came before the lease's news
    assert not any(k.startswith("features.refused") for k in charlie.counters.snapshot())
    # alpha, deposed but unaware, changes a flag: nobody takes it
    alpha.actor.ask(LeaseChanged(Phase.HOLDING, alpha.id, 3, "stale view"))
    alpha.actor.ask(SetFeature("state_sync", True), timeout=30)
    wait_for(
        lambda: charlie.counters.get("features.refused.flags_not_holder") >= 1,
        30,
        "the deposed holder's change refused",
    )
    assert not charlie.gate.enabled("state_sync") and not bravo.gate.enabled("state_sync")


def send_flags(net: Net, sender: Member, to: Member, body: Any, epoch: int = 3) -> None:
    env = make_envelope("features", sender.id, to.id, {"flags": body}, "f1", epoch=epoch)
    net.send(env)


def test_forged_stale_foreign_and_malformed_changes_are_refused_and_counted(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, charlie = mesh
    net = alpha.net
    alpha.actor.ask(SetFeature("state_sync", False), timeout=30)
    first = FeatureFlags.from_dict(net.sent[-1].body["flags"])
    alpha.actor.ask(SetFeature("state_sync", True), timeout=30)
    version = alpha.view()["version"]
    wait_for(lambda: bravo.view()["version"] == version, 30, "bravo at the last version")
    refused = {
        # the old "off", replayed by anyone who saw it
        "flags_stale": first.to_dict(),
        # the holder's signature over other flags
        "flags_forged": {**first.to_dict(), "version": version + 9},
        # a member (charlie) signing flags as if it held
        "flags_not_holder": FeatureFlags()
        .changed(3, disabled=["secret_sync"])
        .sign(charlie.signer())
        .to_dict(),
        # not flags at all
        "flags_malformed": {"disabled": ["lease"], "epoch": 3},
    }
    for code, body in refused.items():
        sender = charlie if code == "flags_not_holder" else alpha
        send_flags(net, sender, bravo, body)
        wait_for(lambda c=code: bravo.counters.get(f"features.refused.{c}") == 1, 30, code)
    # relayed: alpha's genuine flags, sent by charlie
    send_flags(net, charlie, bravo, {**first.to_dict()})
    wait_for(lambda: bravo.counters.get("features.refused.flags_forged") == 2, 30, "relay")
    assert flags_of(bravo) == {"state_sync": True, "secret_sync": True}
    assert bravo.view()["version"] == version and bravo.gate.enabled("state_sync")


def test_a_corrupt_flags_file_starts_every_component_on_and_is_replaced(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, _ = mesh
    path = HomePaths(bravo.root).features
    bravo.actor.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"disabled": ["state_sync"], "epoch": "three"')
    bravo.actor = bravo.start()
    bravo.actor.ask(MembersChanged((alpha.entry(),)))
    bravo.actor.ask(LeaseChanged(Phase.STANDBY, alpha.id, 3, "test"))
    assert flags_of(bravo) == {"state_sync": True, "secret_sync": True}
    alpha.actor.ask(SetFeature("secret_sync", False), timeout=30)
    wait_for(lambda: not bravo.gate.enabled("secret_sync"), 30, "bravo to take it")
    kept = json.loads(path.read_text())
    assert kept["disabled"] == ["secret_sync"] and kept["signer"] == alpha.id


def test_a_flag_off_in_the_gate_is_what_the_components_read() -> None:
    gate = FeatureGate()
    assert gate.enabled("state_sync") and gate.enabled("secret_sync")
    gate.flags = replace(FeatureFlags(), disabled=frozenset({"secret_sync"}))
    assert gate.enabled("state_sync") and not gate.enabled("secret_sync")


def test_a_change_on_its_way_when_the_role_moves_is_taken_by_the_new_holder(
    mesh: tuple[Member, Member, Member],
) -> None:
    """alpha turns state_sync off (acknowledged); its flags have not reached bravo when
    bravo takes over at epoch 4 and signs what it had anew. When alpha's change lands,
    bravo takes it over what it had, at its own epoch: the change stands everywhere."""
    alpha, bravo, charlie = mesh
    net = alpha.net
    net.members.pop(bravo.id)  # on its way to bravo
    alpha.actor.ask(SetFeature("state_sync", False), timeout=30)
    wait_for(lambda: not charlie.gate.enabled("state_sync"), 30, "charlie to take it")
    late = [e for e in net.sent if e.to == bravo.id][-1]
    net.members[bravo.id] = bravo
    lead(mesh, bravo, 4)
    net.send(late)
    wait_for(lambda: not bravo.gate.enabled("state_sync"), 30, "bravo to take alpha's change")
    assert bravo.view()["epoch"] == 4 and bravo.view()["set_by"] == bravo.id
    version = bravo.view()["version"]
    for m in (alpha, charlie):
        wait_for(lambda m=m: m.view()["version"] == version, 30, f"{m.id} at bravo's newest")
        assert not m.gate.enabled("state_sync")


def test_flags_from_an_epoch_past_the_leases_give_way_to_the_holders(tmp_path: Path) -> None:
    """Every home keeps flags of epoch 50, and the lease begins anew at 1 (its store
    replaced): the holder signs them anew at 1 and its changes are taken everywhere."""
    net = Net()
    pair = [Member(tmp_path, n, net) for n in ("alpha", "bravo")]
    alpha, bravo = pair
    old = FeatureFlags().changed(50).sign(alpha.signer())
    try:
        for m in pair:
            m.actor.stop()
            HomePaths(m.root).features.write_text(json.dumps(old.to_dict()))
            m.actor = m.start()
        net.members = {m.id: m for m in pair}
        for m in pair:
            m.actor.ask(MembersChanged(tuple(o.entry() for o in pair if o is not m)))
        lead(pair, alpha, 1)
        assert not alpha.actor.ask(SetFeature("secret_sync", False), timeout=30)["flags"][
            "secret_sync"
        ]
        wait_for(lambda: not bravo.gate.enabled("secret_sync"), 30, "bravo to take it")
        assert bravo.view()["epoch"] == 1
    finally:
        pykka.ActorRegistry.stop_all(timeout=30)
