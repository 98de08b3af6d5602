"""PoolActor over in-memory stores, the envelopes handed between machines by the test:
only the holder turns the pool on or off; every member mirrors the holder's state,
taking it only from the machine its lease view says holds, at that epoch, and only when
newer; a malformed or stranger's state is counted and dropped; a new holder sends what
it has, and again until everyone has it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nacl.public
import nacl.signing
import pytest

from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.pool_actor import RESEND_MS, PoolActor
from baton.actors.pool_messages import GetPool, SetPool
from baton.adapters.metrics import Counters
from baton.core.errors import PoolNotHolder
from baton.core.identity import PublicIdentity
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.pool_state import PoolState
from baton.core.registry import MachineEntry, entry_from_card
from baton.stores.pool_memory import MemoryPoolStore
from baton.wire.envelope import Envelope, make_envelope
from baton.wire.pool_transport import PoolTransport

pytestmark = pytest.mark.timeout(60)


def member(seed: int) -> MachineEntry:
    """A member's registry entry (keys from ``seed``), as the registry hands it out."""
    signing = nacl.signing.SigningKey(bytes([seed]) * 32)
    encryption = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
    ident = PublicIdentity.from_keys(
        f"m{seed}", bytes(signing.verify_key), bytes(encryption.public_key)
    )
    card = {**ident.to_dict(), "wire": "tcp://127.0.0.1:9001", "http": "http://127.0.0.1:1"}
    return entry_from_card(card, 0.0)


class Node:
    def __init__(self, seed: int) -> None:
        self.entry = member(seed)
        self.id = self.entry.machine_id
        self.sent: list[Envelope] = []
        self.counters = Counters()
        self.start(MemoryPoolStore())

    def start(self, store: MemoryPoolStore) -> None:
        self.store = store
        self.actor = PoolActor.start(
            self.id,
            store=self.store,
            transport=PoolTransport(self.id, lambda env: self.sent.append(env) is None),
            counters=self.counters,
        )

    def ask(self, message: Any) -> Any:
        return self.actor.ask(message, timeout=10)

    def lease(self, phase: Phase, holder: str, epoch: int) -> None:
        self.ask(LeaseChanged(phase, holder, epoch, "test"))

    def take(self) -> list[Envelope]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def nodes() -> Iterator[tuple[Node, Node]]:
    a, b = Node(10), Node(20)
    try:
        a.ask(MembersChanged((b.entry,)))
        b.ask(MembersChanged((a.entry,)))
        yield a, b
    finally:
        a.actor.stop(timeout=10)
        b.actor.stop(timeout=10)


def deliver(envs: list[Envelope], to: Node) -> None:
    for env in envs:
        to.ask(EnvelopeReceived(env))


def test_the_holder_turns_the_pool_on_and_every_member_mirrors_it(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    a.lease(Phase.HOLDING, a.id, 3)
    b.lease(Phase.STANDBY, a.id, 3)
    assert a.ask(GetPool())["enabled"] is False
    view = a.ask(SetPool(True))
    routing = {
        "running": 0,
        "waiting": 0,
        "taken_back": 0,
        "active": True,
        "in_flight": {},
        "held_back": {},
    }
    assert view == {"enabled": True, "term": 3, "version": 1, "pins": 0, "placements": 0,
                    "role": "holder", "routing": routing}  # fmt: skip
    deliver(a.take(), b)
    del view["routing"]  # the holder's alone
    assert b.ask(GetPool()) == {**view, "role": "mirror"}
    assert b.counters.get("pool.kept") == 1
    with pytest.raises(PoolNotHolder, match="ask " + a.id):
        b.ask(SetPool(False))
    again = a.ask(SetPool(True))  # a new version all the same, sent: a mirror that
    assert again["version"] == 2 and len(a.take()) == 1  # holds another answer takes it


def test_a_state_is_taken_only_from_the_holder_at_its_epoch(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    a.lease(Phase.HOLDING, a.id, 3)
    b.lease(Phase.STANDBY, a.id, 4)  # b has heard of a newer holder's epoch
    a.ask(SetPool(True))
    deliver(a.take(), b)
    assert b.ask(GetPool())["enabled"] is False
    assert b.counters.get("pool.refused.not_holder") == 1
    a.lease(Phase.HOLDING, a.id, 4)
    b.lease(Phase.HOLDING, b.id, 4)  # b holds itself: it takes nobody's
    a.ask(Tick(10_000))
    deliver(a.take(), b)
    assert b.counters.get("pool.refused.not_holder") == 2


@pytest.mark.parametrize(
    "state",
    [
        {"enabled": "yes"},
        {"enabled": True, "term": 9, "version": 1, "pins": [], "placements": []},  # above 3
        {"enabled": True, "term": 1, "version": 1, "pins": [["t"]], "placements": []},
    ],
)
def test_a_malformed_state_is_counted_and_dropped(
    nodes: tuple[Node, Node], state: dict[str, Any]
) -> None:
    a, b = nodes
    b.lease(Phase.STANDBY, a.id, 3)
    b.ask(
        EnvelopeReceived(make_envelope("pool_state", a.id, b.id, {"state": state}, "x1", epoch=3))
    )
    assert b.counters.get("pool.refused.malformed") == 1 and b.actor.is_alive()
    assert b.store.load() == PoolState()


def test_a_new_holder_sends_what_it_has_and_again_until_everyone_has_it(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    a.lease(Phase.HOLDING, a.id, 3)
    a.ask(SetPool(True))
    a.take()  # lost on the way
    b.lease(Phase.STANDBY, a.id, 3)
    a.ask(Tick(0.0))
    first = a.take()
    assert [e.type for e in first] == ["pool_state"] and first[0].epoch == 3
    a.ask(Tick(RESEND_MS - 1))
    assert a.take() == []  # not before its time
    a.ask(Tick(RESEND_MS))
    deliver(a.take(), b)
    assert b.ask(GetPool())["enabled"] is True
    # the holder fails over to b, which sends what it mirrored, at its own epoch
    b.lease(Phase.HOLDING, b.id, 4)
    a.lease(Phase.STANDBY, b.id, 4)
    b.ask(Tick(20_000))
    deliver(b.take(), a)
    assert a.ask(GetPool())["term"] == 4  # what b held, made its own: a mirrors that
    assert b.ask(SetPool(False))["term"] == 4
    deliver(b.take(), a)
    assert a.ask(GetPool())["enabled"] is False and a.ask(GetPool())["version"] == 2


def test_a_mirror_that_holds_an_older_holders_answer_takes_the_new_holders(
    nodes: tuple[Node, Node],
) -> None:
    """Found by an attack review: the new holder missed the old one's "on"; its "off"
    changed nothing it held, so it sent nothing, and the mirror said "on" for ever."""
    a, b = nodes
    a.lease(Phase.STANDBY, b.id, 3)
    b.lease(Phase.HOLDING, b.id, 3)
    b.ask(SetPool(True))
    deliver(b.take(), a)
    a.lease(Phase.HOLDING, a.id, 4)  # a holds now; b mirrors, with b's "on"
    b.lease(Phase.STANDBY, a.id, 4)
    a.actor.stop(timeout=10)
    a.start(MemoryPoolStore())  # say a had missed b's state
    a.ask(MembersChanged((b.entry,)))
    a.lease(Phase.HOLDING, a.id, 4)
    assert a.ask(SetPool(False))["enabled"] is False
    deliver(a.take(), b)
    assert b.ask(GetPool())["enabled"] is False


@pytest.mark.parametrize(
    "state",
    [
        {"enabled": True, "term": 1, "version": 2**63, "pins": [], "placements": []},
        {"enabled": True, "term": 1, "version": 1, "pins": [["t", "m", 10**400, "x"]],
         "placements": []},
        {"enabled": True, "term": 1, "version": 1, "pins": [],
         "placements": [["t", "m", [[[]]], 1, False]]},
    ],
)  # fmt: skip
def test_a_holders_state_past_any_bound_is_refused_and_the_mirror_lives(
    nodes: tuple[Node, Node], state: dict[str, Any]
) -> None:
    a, b = nodes
    b.lease(Phase.STANDBY, a.id, 3)
    b.actor.tell(
        EnvelopeReceived(make_envelope("pool_state", a.id, b.id, {"state": state}, "x", epoch=3))
    )
    assert b.ask(GetPool())["enabled"] is False and b.actor.is_alive()
    assert b.counters.get("pool.refused.malformed") == 1
