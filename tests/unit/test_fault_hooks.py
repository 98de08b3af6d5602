"""The transport's fault hooks: a file that drops frames to and from named machines, over
two loopback transports (the contract-tested twin of the zmq one)."""

from __future__ import annotations

import json
import os
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nacl.public
import nacl.signing
import pytest

from baton.adapters.metrics import Counters
from baton.core.identity import PublicIdentity
from baton.wire.envelope import Envelope, make_envelope
from baton.wire.fault_hooks import (
    BAD_FILE,
    CHECK_S,
    DROPPED,
    FaultFile,
    FaultyTransport,
    parse_plan,
    with_fault_hooks,
)
from baton.wire.loopback import LoopbackNetwork
from baton.wire.transport import PeerAddress

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Side:
    me: PublicIdentity
    transport: FaultyTransport
    counters: Counters
    inbox: queue.SimpleQueue[Envelope]


def side(net: LoopbackNetwork, nick: str, seed: int, path: Path, clock: Clock) -> Side:
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    ek = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
    me = PublicIdentity.from_keys(nick, bytes(sk.verify_key), bytes(ek.public_key))
    counters = Counters()
    inner = net.transport(me.machine_id, me.encryption_public, counters, 65536)
    transport = FaultyTransport(inner, FaultFile(path, counters, clock), counters)
    inbox: queue.SimpleQueue[Envelope] = queue.SimpleQueue()
    transport.start(inbox.put)
    return Side(me, transport, counters, inbox)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Side, Side, Path, Clock]]:
    net, clock = LoopbackNetwork(), Clock()
    path = tmp_path / "faults.json"
    a = side(net, "alpha", 1, tmp_path / "none.json", clock)
    b = side(net, "bravo", 10, path, clock)
    try:
        for me, other in ((a, b), (b, a)):
            address = PeerAddress(
                other.me.machine_id, other.me.encryption_public, other.transport.endpoint
            )
            me.transport.set_peers([address])
        yield a, b, path, clock
    finally:
        a.transport.stop()
        b.transport.stop()


def ping(src: Side, dst: Side, n: int) -> bool:
    env = make_envelope("ping", src.me.machine_id, dst.me.machine_id, {}, f"id-{n}")
    return src.transport.send(env)


def got(dst: Side, timeout: float = 2.0) -> int | None:
    try:
        return int(dst.inbox.get(timeout=timeout).id.removeprefix("id-"))
    except queue.Empty:
        return None


def write(path: Path, clock: Clock, plan: object) -> None:
    path.write_text(plan if isinstance(plan, str) else json.dumps(plan))
    clock.now += CHECK_S  # the next frame looks at the file again


def test_no_file_drops_nothing_and_a_plan_drops_each_way_alone(
    two: tuple[Side, Side, Path, Clock],
) -> None:
    a, b, path, clock = two
    assert ping(a, b, 1) and got(b) == 1
    assert ping(b, a, 2) and got(a) == 2
    write(path, clock, {"drop_to": [a.me.machine_id]})  # bravo cannot reach alpha
    assert ping(b, a, 3), "a lost frame still counts as handed over"
    assert ping(a, b, 4) and got(b) == 4, "the other way still works"
    assert got(a, 0.3) is None
    write(path, clock, {"drop_from": [a.me.machine_id]})  # bravo cannot hear alpha
    assert ping(a, b, 5) and got(b, 0.3) is None
    assert ping(b, a, 6) and got(a) == 6
    assert b.counters.get(DROPPED) == 2
    write(path, clock, {})  # healed
    assert ping(a, b, 7) and got(b) == 7
    assert ping(b, a, 8) and got(a) == 8


def test_a_changed_file_waits_for_the_next_check(two: tuple[Side, Side, Path, Clock]) -> None:
    a, b, path, clock = two
    write(path, clock, {"drop_to": [a.me.machine_id]})
    assert ping(b, a, 1) and got(a, 0.3) is None
    path.write_text("{}")  # same clock: not looked at yet
    assert ping(b, a, 2) and got(a, 0.3) is None
    clock.now += CHECK_S
    assert ping(b, a, 3) and got(a) == 3


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"drop_to": "x"}', '{"drop_to": [1]}', '{"drop_to": [], "cut": []}'],
)
def test_a_bad_file_is_counted_and_drops_nothing(
    two: tuple[Side, Side, Path, Clock], text: str
) -> None:
    a, b, path, clock = two
    write(path, clock, {"drop_to": [a.me.machine_id]})
    assert ping(b, a, 1) and got(a, 0.3) is None
    write(path, clock, text)
    assert ping(b, a, 2) and got(a) == 2
    assert ping(b, a, 3) and got(a) == 3
    assert b.counters.get(BAD_FILE) == 1, "counted once per change"


def test_parse_plan_and_no_setting_means_no_wrapper(tmp_path: Path) -> None:
    plan = parse_plan('{"drop_to": ["x"], "drop_from": ["y", "z"]}')
    assert plan.drop_to == {"x"} and plan.drop_from == {"y", "z"}
    net = LoopbackNetwork()
    counters = Counters()
    sk = nacl.signing.SigningKey(bytes([3]) * 32)
    me = PublicIdentity.from_keys("x", bytes(sk.verify_key), bytes(32))
    plain = net.transport(me.machine_id, bytes(32), counters, 1024)
    assert with_fault_hooks(plain, "", counters) is plain
    wrapped = with_fault_hooks(plain, str(tmp_path / "f.json"), counters)
    assert isinstance(wrapped, FaultyTransport) and wrapped.inner is plain


def test_a_replaced_file_of_the_same_size_and_time_is_still_seen(
    two: tuple[Side, Side, Path, Clock],
) -> None:
    """Two plans of one size written within one tick of the file clock: the inode that
    os.replace gives every write tells them apart."""
    a, b, path, clock = two
    write(path, clock, {"drop_to": [a.me.machine_id]})
    assert ping(b, a, 1) and got(a, 0.3) is None
    stamp = path.stat().st_mtime_ns
    fresh = path.with_name("next.json")
    fresh.write_text(json.dumps({"drop_to": ["x" * len(a.me.machine_id)]}))
    os.utime(fresh, ns=(stamp, stamp))
    os.replace(fresh, path)
    assert path.stat().st_size == len(json.dumps({"drop_to": [a.me.machine_id]}))
    clock.now += CHECK_S
    assert ping(b, a, 2) and got(a) == 2
