"""PeerMonitorActor over the loopback twin, with a fake clock driven by Tick messages."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import nacl.public
import nacl.signing
import pykka
import pytest

from baton.actors.dispatch import Dispatcher
from baton.actors.messages import EnvelopeReceived, GetPeerReports, MembersChanged, Tick
from baton.actors.peer_monitor import SEEN_EVERY, PeerMonitorActor
from baton.adapters.metrics import Counters
from baton.build import THIS
from baton.core.clock import FakeClock
from baton.core.identity import PublicIdentity
from baton.core.ping import PeerReport
from baton.core.registry import MachineEntry, entry_from_card
from baton.core.versions import Versions
from baton.wire.envelope import Envelope, make_envelope
from baton.wire.loopback import LoopbackNetwork, LoopbackTransport
from baton.wire.transport import PeerAddress
from tests.signers import identity
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(30)


@dataclass
class Side:
    me: PublicIdentity
    transport: LoopbackTransport
    counters: Counters
    actor: pykka.ActorRef  # type: ignore[type-arg]

    def address(self) -> PeerAddress:
        return PeerAddress(self.me.machine_id, self.me.encryption_public, self.transport.endpoint)

    def reports(self) -> list[PeerReport]:
        return list(self.actor.ask(GetPeerReports(), timeout=5))


def make_side(net: LoopbackNetwork, clock: FakeClock, nick: str, seed: int) -> Side:
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    ek = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
    me = PublicIdentity.from_keys(nick, bytes(sk.verify_key), bytes(ek.public_key))
    counters = Counters()
    transport = net.transport(me.machine_id, me.encryption_public, counters, 65536)
    rng = random.Random(seed).randbytes
    actor = PeerMonitorActor.start(
        me.machine_id,
        transport=transport,
        clock=clock,
        counters=counters,
        interval_ms=1000,
        rng=rng,
    )
    transport.start(Dispatcher({"ping": actor, "pong": actor}, counters))
    return Side(me, transport, counters, actor)


def entry_of(me: PublicIdentity) -> MachineEntry:
    card = {**me.to_dict(), "wire": "tcp://127.0.0.1:9001", "http": "http://127.0.0.1:9002"}
    return entry_from_card(card, 0.0)


@pytest.fixture
def sides() -> Iterator[tuple[Side, Side, FakeClock, LoopbackNetwork]]:
    net, clock = LoopbackNetwork(), FakeClock()
    made: list[Side] = []
    try:
        made.append(make_side(net, clock, "laptop", 1))
        made.append(make_side(net, clock, "mini", 10))
        a, b = made
        for x, y in ((a, b), (b, a)):
            x.transport.set_peers([y.address()])
            x.actor.tell(MembersChanged((entry_of(y.me),)))
        yield a, b, clock, net
    finally:
        for side in made:
            side.actor.stop(timeout=5)
            side.transport.stop()


def test_pings_are_answered_and_give_a_round_trip_time(sides) -> None:  # type: ignore[no-untyped-def]
    a, b, clock, _ = sides
    a.actor.tell(Tick(clock.monotonic_ms()))
    [report] = wait_for(lambda: [r for r in a.reports() if r.pongs == 1], 10, "a pong")
    assert report.machine_id == b.me.machine_id and report.reachable
    assert report.rtt_ms == 0.0, "the fake clock did not move between ping and pong"
    assert b.reports()[0].pongs == 0, "b answered but never pinged"


def test_a_partitioned_peer_becomes_unreachable_and_recovers(sides) -> None:  # type: ignore[no-untyped-def]
    a, b, clock, net = sides
    a.actor.tell(Tick(clock.monotonic_ms()))
    wait_for(lambda: a.reports()[0].reachable, 10, "a to reach b")
    net.partition(a.me.machine_id, b.me.machine_id)
    for _ in range(4):
        clock.advance(1000)
        a.actor.tell(Tick(clock.monotonic_ms()))
    [report] = a.reports()
    assert not report.reachable and report.pings == 5 and report.pongs == 1
    net.heal(a.me.machine_id, b.me.machine_id)
    clock.advance(1000)
    a.actor.tell(Tick(clock.monotonic_ms()))
    wait_for(lambda: a.reports()[0].reachable, 10, "a to reach b again")


def test_stray_pongs_are_counted_not_believed(sides) -> None:  # type: ignore[no-untyped-def]
    a, b, _clock, net = sides
    from baton.wire.envelope import encode, make_envelope

    stray = make_envelope("pong", b.me.machine_id, a.me.machine_id, {"ping_id": "nope"}, "s1")
    net.inject_raw(a.me.machine_id, b.me.machine_id, encode(stray))
    wait_for(lambda: a.counters.get("peers.stray_pong") == 1, 10, "the stray pong to be counted")
    assert a.reports()[0].pongs == 0 and not a.reports()[0].reachable


class SeeingTransport:
    """Records sends; says which address each peer's connections come from."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []
        self.seen: dict[str, str] = {}

    def send(self, env: Envelope) -> bool:
        self.sent.append(env)
        return True

    def observed(self) -> dict[str, str]:
        return dict(self.seen)


def test_a_peer_is_told_the_address_it_is_seen_from_on_a_change_and_now_and_then() -> None:
    me, peer = identity("alpha", 1), identity("bravo", 2)
    transport = SeeingTransport()
    actor = PeerMonitorActor.start(
        me.machine_id,
        transport=transport,
        clock=FakeClock(),
        counters=Counters(),
        interval_ms=1000,
        rng=os.urandom,  # type: ignore[arg-type]
    )
    try:

        def ping(n: int) -> list[str]:
            for i in range(n):
                env = make_envelope("ping", peer.machine_id, me.machine_id, {}, f"p{i}")
                actor.ask(EnvelopeReceived(env), timeout=5)
            return [e.body["address"] for e in transport.sent if e.type == "seen"]

        assert ping(3) == []  # nothing seen yet: nothing told
        transport.seen[peer.machine_id] = "203.0.113.7"
        assert ping(SEEN_EVERY) == ["203.0.113.7"]  # told once ...
        assert ping(1) == ["203.0.113.7"] * 2  # ... and again after SEEN_EVERY pings
        transport.seen[peer.machine_id] = "198.51.100.2"
        assert ping(1)[-1] == "198.51.100.2"  # a change is told at once
        assert len([e for e in transport.sent if e.type == "pong"]) == 3 + SEEN_EVERY + 2
    finally:
        actor.stop(timeout=5)


def test_a_ping_says_which_baton_sends_it_and_one_that_does_not_read_is_counted() -> None:
    me, peer = identity("alpha", 1), identity("bravo", 2)
    transport = SeeingTransport()
    counters = Counters()
    actor = PeerMonitorActor.start(
        me.machine_id,
        transport=transport,
        clock=FakeClock(),
        counters=counters,
        interval_ms=1000,
        rng=os.urandom,  # type: ignore[arg-type]
    )
    try:
        actor.ask(MembersChanged((entry_of(peer),)), timeout=5)
        actor.ask(Tick(0.0), timeout=5)
        [ping] = [e for e in transport.sent if e.type == "ping"]
        assert dict(ping.body) == THIS.to_dict()  # ours says what we run

        def heard(body: dict[str, object], n: int) -> Versions | None:
            env = make_envelope("ping", peer.machine_id, me.machine_id, body, f"v{n}")
            actor.ask(EnvelopeReceived(env), timeout=5)
            [report] = actor.ask(GetPeerReports(), timeout=5)
            return report.versions

        newer = {"version": "0.2.0", "protocols": [1, 2]}
        assert heard(newer, 1) == Versions("0.2.0", (1, 2))
        assert heard({}, 2) is None  # an older baton's ping says nothing
        bad = {"version": "0.2.0", "protocols": [2, 1]}
        assert heard(bad, 3) is None and heard(bad, 4) is None
        assert heard({"protocols": [1, 2]}, 5) is None  # half of it: unread, counted
        assert counters.get("peers.bad_versions") == 3
        assert len([e for e in transport.sent if e.type == "pong"]) == 5  # all answered
    finally:
        actor.stop(timeout=5)


def test_a_peer_is_heard_only_by_its_pong_to_a_ping_of_ours() -> None:
    """The pool's registry hears a peer alive through this actor: its pong to a ping of
    ours, at this machine's clock. Its own ping proves only one way (under a one-way
    cut, it would keep alive a machine this one cannot reach); a pong to no ping of
    ours proves nothing."""
    me, peer = identity("alpha", 1), identity("bravo", 2)
    transport, clock, heard = SeeingTransport(), FakeClock(), []
    actor = PeerMonitorActor.start(
        me.machine_id,
        transport=transport,
        clock=clock,
        counters=Counters(),
        interval_ms=1000,
        rng=os.urandom,  # type: ignore[arg-type]
        heard=lambda who, now: heard.append((who, now)),
    )
    try:
        actor.ask(MembersChanged((entry_of(peer),)), timeout=5)
        start = clock.monotonic_ms()
        clock.advance(100)
        actor.ask(Tick(clock.monotonic_ms()), timeout=5)
        [ping] = [e for e in transport.sent if e.type == "ping"]
        theirs = make_envelope("ping", peer.machine_id, me.machine_id, {}, "p0")
        stray = make_envelope("pong", peer.machine_id, me.machine_id, {"ping_id": "x1"}, "p1")
        for env in (theirs, stray):
            actor.ask(EnvelopeReceived(env), timeout=5)
        assert heard == []
        clock.advance(50)
        pong = make_envelope("pong", peer.machine_id, me.machine_id, {"ping_id": ping.id}, "p2")
        actor.ask(EnvelopeReceived(pong), timeout=5)
        assert heard == [(peer.machine_id, start + 150)]
    finally:
        actor.stop(timeout=5)
