"""SecretSyncActor over real SecretStores, real sealed boxes and envelopes that go
through the wire's encoding: a secret set on one member reaches every other, a removal
travels like a change, the newest version wins, a removed machine rotates the master
key, and every bad envelope is refused, counted, and changes nothing."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.public
import pykka
import pytest

from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.secret_sync_actor import SecretSyncActor
from baton.adapters.metrics import Counters
from baton.core import secret_rules as rules
from baton.core.clock import FakeClock
from baton.core.registry import MachineEntry
from baton.core.secret_rules import Secret, to_wire
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity, create_home
from baton.stores.secret_store import SecretStore
from baton.wire.envelope import Envelope, encode, make_envelope
from baton.wire.secret_transport import SecretTransport
from tests.actors.envelope_net import Net, entry_of
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)

NOW = 1_800_000_000.0
VALUE = "sk-live-0123456789abcdef"


class Member:
    def __init__(self, root: Path, name: str, net: Net) -> None:
        self.identity: MachineIdentity = create_home(root / name, name)
        self.id = self.identity.machine_id
        self.store = SecretStore(HomePaths(root / name), self.id)
        self.counters = Counters()
        self.changed: list[set[str]] = []
        self.removed: list[str] = []
        self.now_ms = 0.0
        self.enabled = True  # the secret_sync component flag, as this member's gate says
        self.actor = SecretSyncActor.start(
            self.store,
            transport=SecretTransport(self.id, net.send),
            key=self.identity.encryption_key,
            removed=lambda: self.removed,
            clock=FakeClock(wall_s=NOW),
            counters=self.counters,
            on_change=self.changed.append,
            every_ms=1000,
            enabled=lambda: self.enabled,
        )

    def entry(self) -> MachineEntry:
        return entry_of(self.identity, NOW - 100)

    def tick(self, ms: float = 100) -> None:
        self.now_ms += ms
        self.actor.ask(Tick(self.now_ms), timeout=30)

    def value(self, name: str) -> str | None:
        found = self.store.all().get(name)
        return None if found is None else found.value


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[Member, Member, Member]]:
    net = Net()
    members = [Member(tmp_path, n, net) for n in ("alpha", "bravo", "charlie")]
    net.members = {m.id: m for m in members}
    try:
        for m in members:
            m.actor.ask(MembersChanged(tuple(o.entry() for o in members if o is not m)))
        yield members[0], members[1], members[2]
    finally:
        pykka.ActorRegistry.stop_all(timeout=30)


def settled(*members: Member) -> None:
    """Every actor has handled what was told it so far (a few rounds: answers cause
    answers)."""
    for _ in range(4):
        for m in members:
            m.actor.ask(Tick(m.now_ms), timeout=30)


def test_a_secret_set_on_one_member_reaches_every_other(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, charlie = mesh
    alpha.store.set("API_KEY", VALUE, NOW)
    alpha.tick()
    for m in (bravo, charlie):
        # counted once the store has it (the file is written first, then counted)
        wait_for(lambda m=m: m.counters.get("secrets.taken") == 1, 30, f"{m.id} to take it")
        assert m.value("API_KEY") == VALUE
        wait_for(lambda m=m: {"API_KEY"} in m.changed, 30, "the agent's environment told")
    wait_for(lambda: alpha.counters.get("secrets.given") == 2, 30, "alpha to count both")
    assert bravo.store.all()["API_KEY"].set_by == alpha.id


def test_the_value_travels_only_sealed(mesh: tuple[Member, Member, Member]) -> None:
    alpha, bravo, _ = mesh
    alpha.store.set("API_KEY", VALUE, NOW)
    alpha.tick()
    wait_for(lambda: bravo.value("API_KEY") == VALUE, 30, "bravo to have the secret")
    net: Net = alpha.actor.proxy().transport.get().send.__self__
    assert not any(VALUE in encode(e).decode() for e in net.sent)
    assert any(e.type == "secret" for e in net.sent)


def test_a_removal_travels_and_the_newest_version_wins(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, charlie = mesh
    alpha.store.set("API_KEY", "old", NOW)
    alpha.tick()
    wait_for(lambda: charlie.value("API_KEY") == "old", 30, "the first version")
    bravo.store.set("API_KEY", "newer", NOW + 5)
    alpha.store.remove("API_KEY", NOW + 1)  # older than bravo's change: it loses
    alpha.tick()
    bravo.tick()
    settled(alpha, bravo, charlie)
    for m in (alpha, bravo, charlie):
        wait_for(lambda m=m: m.value("API_KEY") == "newer", 30, f"{m.id} to take the newest")
    alpha.store.remove("API_KEY", NOW + 10)
    alpha.tick()
    for m in (bravo, charlie):
        wait_for(lambda m=m: m.value("API_KEY") is None, 30, f"the removal to reach {m.id}")
        assert m.store.entries()["API_KEY"].deleted


def envelope(sender: Member, to: Member, type_: str, body: dict[str, Any]) -> Envelope:
    return make_envelope(type_, sender.id, to.id, body, "m1")


def box_for(member: Member, raw: bytes) -> str:
    key = nacl.public.PublicKey(member.identity.encryption_key.public_key.encode())
    return base64.b64encode(nacl.public.SealedBox(key).encrypt(raw)).decode()


BAD = {
    "not base64": lambda to: {"box": "%%%"},
    "sealed to another key": lambda to: {
        "box": base64.b64encode(
            nacl.public.SealedBox(nacl.public.PrivateKey.generate().public_key).encrypt(b"{}")
        ).decode()
    },
    "not a secret": lambda to: {"box": box_for(to, b'{"name": "API_KEY"}')},
    "deep json": lambda to: {"box": box_for(to, b"[" * 100_000)},
    "a bad name": lambda to: {"box": box_for(to, to_wire("lower", Secret("x", to.id, NOW)))},
    "dated far ahead": lambda to: {
        "box": box_for(to, to_wire("API_KEY", Secret("x", to.id, NOW + 86_400)))
    },
}


@pytest.mark.parametrize("how", sorted(BAD))
def test_a_bad_secret_is_refused_counted_and_changes_nothing(
    mesh: tuple[Member, Member, Member], how: str
) -> None:
    alpha, bravo, _ = mesh
    bravo.store.set("API_KEY", VALUE, NOW)
    before = bravo.store.file.read_bytes()
    bravo.actor.tell(EnvelopeReceived(envelope(alpha, bravo, "secret", BAD[how](bravo))))
    wait_for(lambda: bravo.counters.get("secrets.refused.bad") == 1, 30, "the refusal")
    assert bravo.store.file.read_bytes() == before and bravo.actor.is_alive()


@pytest.mark.parametrize(
    "have", [{"A": "x"}, {"lower": [1.0, "x"]}, {"API_KEY": [1.0]}, {"A": ["x", "y"]}]
)
def test_a_bad_digest_is_refused(mesh: tuple[Member, Member, Member], have: Any) -> None:
    alpha, bravo, _ = mesh
    body = {"have": have, "reply": False}
    bravo.actor.tell(EnvelopeReceived(envelope(alpha, bravo, "secrets_have", body)))
    wait_for(lambda: bravo.counters.get("secrets.refused.bad") == 1, 30, "the refusal")


def test_envelopes_from_a_machine_not_a_member_are_refused(
    mesh: tuple[Member, Member, Member], tmp_path: Path
) -> None:
    _, bravo, _ = mesh
    stranger = create_home(tmp_path / "stranger", "stranger")
    raw = to_wire("API_KEY", Secret("planted", stranger.machine_id, NOW))
    env = make_envelope("secret", stranger.machine_id, bravo.id, {"box": box_for(bravo, raw)}, "m")
    bravo.actor.tell(EnvelopeReceived(env))
    wait_for(lambda: bravo.counters.get("secrets.refused.stranger") == 1, 30, "the refusal")
    assert bravo.value("API_KEY") is None


def test_a_removed_machine_rotates_the_master_key_and_names_what_it_knew(
    mesh: tuple[Member, Member, Member], caplog: pytest.LogCaptureFixture
) -> None:
    alpha, bravo, charlie = mesh
    alpha.store.set("API_KEY", VALUE, NOW)
    alpha.store.set("OTHER", "x", NOW)
    key_before = alpha.store.key_file.read_bytes()
    alpha.removed.append(charlie.id)
    with caplog.at_level(logging.WARNING, logger="baton.secrets"):
        alpha.actor.ask(MembersChanged((bravo.entry(),)), timeout=30)
    assert alpha.store.rotated_for() == (charlie.id,)
    assert alpha.store.key_file.read_bytes() != key_before
    assert alpha.value("API_KEY") == VALUE and alpha.counters.get("secrets.rotated") == 1
    assert "API_KEY, OTHER" in caplog.text and VALUE not in caplog.text
    alpha.actor.ask(MembersChanged((bravo.entry(),)), timeout=30)  # once per removal
    assert alpha.counters.get("secrets.rotated") == 1


def test_a_secret_too_large_for_the_wire_is_counted_not_sent(
    mesh: tuple[Member, Member, Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, bravo, _ = mesh

    def too_big(*_: object) -> bool:
        raise ValueError("frame of 2000000 bytes exceeds max_frame_bytes")

    # before the secret exists: the members' greeting digests may still be in flight,
    # and an answer to one read after the set would give the secret at once (a race a
    # fast loop met when the monkeypatch came second)
    monkeypatch.setattr(SecretTransport, "give", too_big)
    alpha.store.set("API_KEY", VALUE, NOW)
    alpha.tick()
    wait_for(lambda: alpha.counters.get("secrets.unsent") >= 1, 30, "the unsent secret")
    assert bravo.value("API_KEY") is None and alpha.actor.is_alive()


# --- found by an attack review --------------------------------------------------------


def test_a_huge_integer_time_is_refused_not_a_crash(mesh: tuple[Member, Member, Member]) -> None:
    alpha, bravo, _ = mesh
    have = {"API_KEY": [10**400, alpha.id]}  # valid JSON, a valid envelope
    bravo.actor.tell(
        EnvelopeReceived(envelope(alpha, bravo, "secrets_have", {"have": have, "reply": False}))
    )
    raw = b'{"name":"API_KEY","value":"x","set_by":"%s","set_at":1%s}' % (
        alpha.id.encode(),
        b"0" * 400,
    )
    bravo.actor.tell(
        EnvelopeReceived(envelope(alpha, bravo, "secret", {"box": box_for(bravo, raw)}))
    )
    wait_for(lambda: bravo.counters.get("secrets.refused.bad") == 2, 30, "both refused")
    assert bravo.actor.is_alive() and bravo.value("API_KEY") is None


def barrier(*members: Member) -> None:
    """Every actor has handled what it was told before (no tick is due: nothing sent)."""
    for m in members:
        m.actor.ask(Tick(m.now_ms), timeout=30)


def test_members_that_cannot_agree_exchange_once_a_round_never_in_a_loop(
    mesh: tuple[Member, Member, Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "MAX_SECRETS", 2)  # 256 in production
    alpha, bravo, _ = mesh
    alpha.store.set("A_ONE", "1", NOW)
    alpha.store.set("A_TWO", "2", NOW)
    bravo.store.set("B_ONE", "3", NOW)  # together: 3 names, over the limit
    alpha.tick()
    net: Net = alpha.actor.proxy().transport.get().send.__self__
    everyone = mesh  # charlie answers too: every actor is in each round
    last = -1
    for _ in range(40):  # a round in which nobody sent anything: all is handled
        barrier(*everyone)
        if len(net.sent) == last:
            break
        last = len(net.sent)
    else:
        raise AssertionError(f"envelopes kept flowing with no tick: {len(net.sent)}")
    for _ in range(6):
        barrier(*everyone)
    assert len(net.sent) == last
    assert bravo.counters.get("secrets.refused.bad") >= 1  # what it could not take


def test_versions_too_many_for_one_frame_are_counted_not_a_crash(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, _, _ = mesh
    transport = alpha.actor.proxy().transport.get()
    real = transport.send

    def framed(env: Envelope) -> bool:  # what the zmq transport does past max_frame_bytes
        if len(encode(env)) > 4096:
            raise ValueError("envelope exceeds max_frame_bytes=4096")
        return bool(real(env))

    transport.send = framed
    for i in range(60):
        alpha.store.set(f"SECRET_NUMBER_{i:03d}_WITH_A_LONG_DESCRIPTIVE_NAME", "v", NOW)
    alpha.tick()
    assert alpha.counters.get("secrets.unsent") == 2 and alpha.actor.is_alive()


def test_a_removal_with_no_master_key_here_claims_no_rotation(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, charlie = mesh
    alpha.removed.append(charlie.id)
    for _ in range(3):
        alpha.actor.ask(MembersChanged((bravo.entry(),)), timeout=30)
    assert alpha.counters.get("secrets.rotated") == 0 and not alpha.store.file.exists()


def test_a_secret_taken_is_passed_on_at_once(mesh: tuple[Member, Member, Member]) -> None:
    alpha, bravo, charlie = mesh
    alpha.actor.ask(MembersChanged((bravo.entry(),)), timeout=30)  # alpha reaches bravo only
    alpha.store.set("API_KEY", VALUE, NOW)
    alpha.tick()  # nobody else ticks: bravo passes it on as it takes it
    wait_for(lambda: charlie.counters.get("secrets.taken") == 1, 30, "charlie to have it")
    assert charlie.value("API_KEY") == VALUE


def test_a_store_that_fails_as_nobody_foresaw_never_ends_the_actor(
    mesh: tuple[Member, Member, Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, _, _ = mesh

    def broken() -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(alpha.store, "stamp", broken)
    alpha.tick()
    alpha.tick()
    assert alpha.counters.get("secrets.unavailable") == 2 and alpha.actor.is_alive()


def test_with_the_flag_off_nothing_is_told_given_or_taken_until_it_is_back_on(
    mesh: tuple[Member, Member, Member],
) -> None:
    alpha, bravo, charlie = mesh
    settled(alpha, bravo, charlie)  # what joining told is done
    for m in mesh:
        m.enabled = False
    net: Net = alpha.actor.proxy().transport.get().send.__self__
    told = len(net.sent)
    alpha.store.set("API_KEY", VALUE, NOW)
    alpha.tick(5000)
    assert alpha.changed == [{"API_KEY"}]  # its own agent has it at once
    assert net.sent[told:] == []  # nothing told
    # a peer whose flag is still on (it has not taken the change yet) tells: refused
    charlie.enabled = True
    charlie.store.set("OTHER", VALUE, NOW)
    charlie.tick(5000)
    wait_for(lambda: bravo.counters.get("secrets.disabled") >= 1, 30, "bravo to refuse it")
    settled(alpha, bravo, charlie)
    assert bravo.value("OTHER") is None and bravo.value("API_KEY") is None
    for m in mesh:
        m.enabled = True
    alpha.tick(100)  # back on: told at the first tick
    wait_for(lambda: bravo.value("API_KEY") == VALUE, 30, "bravo to take it once on")
