"""Attack tests (temporary): SecretSyncActor and its rules under hostile or odd input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.core import secret_rules
from baton.core.secret_rules import Secret, to_wire
from baton.wire.envelope import Envelope, encode
from tests.actors.test_secret_sync_actor import NOW, Member, Net, box_for, envelope
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Member, Member, Net]]:
    net = Net()
    members = [Member(tmp_path, n, net) for n in ("alpha", "bravo")]
    net.members = {m.id: m for m in members}
    try:
        for m in members:
            m.actor.ask(MembersChanged(tuple(o.entry() for o in members if o is not m)))
        yield members[0], members[1], net
    finally:
        pykka.ActorRegistry.stop_all(timeout=30)


def test_a_digest_with_a_huge_integer_time_is_refused_not_a_crash(
    two: tuple[Member, Member, Net],
) -> None:
    alpha, bravo, _ = two
    have = {"API_KEY": [10**400, alpha.id]}  # valid JSON, a valid envelope
    bravo.actor.tell(EnvelopeReceived(envelope(alpha, bravo, "secrets_have", {"have": have})))
    time.sleep(1.0)
    assert bravo.actor.is_alive(), "one digest from a member killed SecretSyncActor"
    assert bravo.counters.get("secrets.refused.bad") == 1


def test_a_secret_with_a_huge_integer_time_is_refused_not_a_crash(
    two: tuple[Member, Member, Net],
) -> None:
    alpha, bravo, _ = two
    raw = ('{"name":"API_KEY","value":"x","set_by":"%s","set_at":%d}' % (alpha.id, 10**400)).encode()
    bravo.actor.tell(EnvelopeReceived(envelope(alpha, bravo, "secret", {"box": box_for(bravo, raw)})))
    time.sleep(1.0)
    assert bravo.actor.is_alive(), "one sealed secret from a member killed SecretSyncActor"


def test_two_members_over_the_secret_limit_do_not_exchange_forever(
    two: tuple[Member, Member, Net], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secret_rules, "MAX_SECRETS", 2)  # 256 in production
    alpha, bravo, net = two
    alpha.store.set("A_ONE", "1", NOW)
    alpha.store.set("A_TWO", "2", NOW)
    bravo.store.set("B_ONE", "3", NOW)  # together: 3 names, over the limit
    alpha.tick()  # one tick, then nobody ticks again
    time.sleep(2.0)
    first = len(net.sent)
    time.sleep(2.0)
    second = len(net.sent)
    assert second == first, f"envelopes keep flowing with no tick: {first} then {second}"


def test_a_digest_larger_than_a_frame_does_not_kill_the_actor(
    two: tuple[Member, Member, Net],
) -> None:
    alpha, bravo, net = two
    real = net.send

    def framed(env: Envelope) -> bool:  # what ZmqTransport.send does past max_frame_bytes
        data = encode(env)
        if len(data) > 4096:
            raise ValueError(f"envelope of {len(data)} bytes exceeds max_frame_bytes=4096")
        return real(env)

    net.send = framed  # type: ignore[method-assign]
    alpha.actor.proxy().transport.get().send = framed
    for i in range(60):
        alpha.store.set(f"SECRET_NUMBER_{i:03d}_WITH_A_LONG_DESCRIPTIVE_NAME_XXXXXXXXXX", "v", NOW)
    alpha.actor.tell(Tick(100.0))  # the Ticker tells, never asks
    time.sleep(1.0)
    assert alpha.actor.is_alive(), "a digest over the frame limit killed SecretSyncActor"


def test_no_rotation_is_claimed_where_there_is_no_key(two: tuple[Member, Member, Net]) -> None:
    alpha, bravo, _ = two
    alpha.removed.append("m_aaaaaaaaaaaaaaaa")
    for _ in range(3):
        alpha.actor.ask(MembersChanged((bravo.entry(),)), timeout=30)
    assert alpha.counters.get("secrets.rotated") <= 1, (
        f"'rotated' counted {alpha.counters.get('secrets.rotated')} times, no key exists"
    )


def test_two_members_given_one_version_with_two_values_end_alike(tmp_path: Path) -> None:
    net = Net()
    members = [Member(tmp_path, n, net) for n in ("alpha", "bravo", "charlie")]
    net.members = {m.id: m for m in members}
    alpha, bravo, charlie = members
    try:
        for m in members:
            m.actor.ask(MembersChanged(tuple(o.entry() for o in members if o is not m)))
        # charlie (a member) seals one version, two values: set_by is not checked
        for to, value in ((alpha, "one"), (bravo, "two")):
            raw = to_wire("API_KEY", Secret(value, charlie.id, NOW))
            to.actor.tell(EnvelopeReceived(envelope(charlie, to, "secret", {"box": box_for(to, raw)})))
        wait_for(lambda: alpha.value("API_KEY") and bravo.value("API_KEY"), 30, "both taken")
        for _ in range(5):
            for m in (alpha, bravo):
                m.tick(2000)
        time.sleep(1.0)
        assert alpha.value("API_KEY") == bravo.value("API_KEY"), "they disagree for good"
    finally:
        pykka.ActorRegistry.stop_all(timeout=30)
