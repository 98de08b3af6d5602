"""LeaseCoordinatorActor over a MemoryLeaseStore and a fake clock: it acquires, pushes
records to its peers, and drops and counts every bad record a peer sends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import nacl.public
import nacl.signing
import pytest

from baton.actors.lease_actor import GetLease, LeaseCoordinatorActor
from baton.actors.lease_worker import LeaseStoreWorker
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.build import THIS
from baton.core.clock import FakeClock
from baton.core.identity import PublicIdentity, derive_machine_id
from baton.core.lease import LeaseConfig, Timing
from baton.core.lease_record import LeaseRecord, sign_record
from baton.core.lease_types import LeaseChanged, LeaseState, Phase
from baton.core.registry import entry_from_card
from baton.core.versions import Versions
from baton.stores.lease_memory import MemoryLeaseStore
from baton.wire.envelope import Envelope, make_envelope
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(30)

TIMING = Timing.of(3000, 1000, 0.01)


def signer(seed: int) -> Ed25519Signer:
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    return Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)


ME, PEER, STRANGER = signer(1), signer(3), signer(5)


def peer_entry(s: Ed25519Signer, nick: str, seed: int) -> Any:
    ek = nacl.public.PrivateKey(bytes([seed]) * 32)
    ident = PublicIdentity.from_keys(nick, bytes(s._key.verify_key), bytes(ek.public_key))
    card = {**ident.to_dict(), "wire": "tcp://127.0.0.1:9001", "http": "http://127.0.0.1:9002"}
    return entry_from_card(card, 0.0)


class Kit:
    def __init__(self, versions: Versions = THIS) -> None:
        self.store = MemoryLeaseStore()
        self.clock = FakeClock()
        self.sent: list[Envelope] = []
        self.counters = Counters()
        self.worker = LeaseStoreWorker(self.store)
        self.worker.start()
        cfg = LeaseConfig(ME.machine_id, TIMING, ME)
        self.ref = LeaseCoordinatorActor.start(
            cfg,
            signing_public=bytes(ME._key.verify_key),
            worker=self.worker,
            clock=self.clock,
            send=lambda env: self.sent.append(env) or True,
            verify=verify_ed25519,
            counters=self.counters,
            versions=versions,
        )
        self.ref.tell(MembersChanged((peer_entry(PEER, "peer", 4),)))

    def view(self) -> dict[str, Any]:
        return dict(self.ref.ask(GetLease(), timeout=5))

    def tick(self) -> None:
        self.ref.tell(Tick(self.clock.monotonic_ms()))

    def receive(self, body: dict[str, Any], sender: str = PEER.machine_id) -> None:
        env = make_envelope("lease", sender, ME.machine_id, {"token": "", **body}, "m1")
        self.ref.tell(EnvelopeReceived(env))

    def stop(self) -> None:
        self.ref.stop(timeout=5)
        self.worker.stop()


@pytest.fixture
def kit() -> Iterator[Kit]:
    k = Kit()
    try:
        yield k
    finally:
        k.stop()


def test_it_acquires_and_pushes_the_signed_record_to_its_peers(kit: Kit) -> None:
    kit.tick()
    wait_for(lambda: kit.view()["role"] == "awake", 10, "the lease")
    view = kit.view()
    assert view["holder"] == ME.machine_id and view["epoch"] == 1 and view["deadline_ms"] > 0
    assert view["history"][0]["reason"] == "acquired"
    wait_for(lambda: kit.sent, 10, "a push")
    record = LeaseRecord.from_dict(kit.sent[0].body["record"])
    assert kit.sent[0].type == "lease" and kit.sent[0].to == PEER.machine_id
    assert record.holder == ME.machine_id and record.signature is not None


def record(who: Ed25519Signer, epoch: int, nonce: int = 0) -> LeaseRecord:
    return sign_record(LeaseRecord(who.machine_id, epoch, nonce, 3000, 0.0), who)


@pytest.mark.parametrize(
    "body, counter",
    [
        ({"record": {"holder": "x"}}, "lease.refused.lease_malformed"),
        ({"record": {**record(PEER, 1).to_dict(), "nonce": -1}}, "lease.refused.lease_malformed"),
        (
            {"record": replace(record(PEER, 1), signature=None).to_dict()},
            "lease.refused.lease_forged",
        ),
        (
            {"record": replace(record(PEER, 1), epoch=2).to_dict()},
            "lease.refused.lease_forged",
        ),
        ({"record": record(STRANGER, 9).to_dict()}, "lease.refused.lease_stranger"),
    ],
)
def test_bad_records_are_dropped_counted_and_change_nothing(
    kit: Kit, body: dict[str, Any], counter: str
) -> None:
    before = kit.view()
    kit.receive(body)
    wait_for(lambda: kit.counters.get(counter) == 1, 10, counter)
    after = kit.view()
    assert (after["holder"], after["epoch"]) == (before["holder"], before["epoch"])
    assert kit.ref.is_alive()


def test_replayed_and_stale_records_are_dropped_and_counted(kit: Kit) -> None:
    kit.receive({"record": record(PEER, 3, 1).to_dict()})
    wait_for(lambda: kit.view()["epoch"] == 3, 10, "the peer's record")
    kit.receive({"record": record(PEER, 3, 1).to_dict()})  # the same again
    wait_for(lambda: kit.counters.get("lease.refused.lease_replayed") == 1, 10, "the replay")
    kit.receive({"record": record(PEER, 2, 7).to_dict()})  # an older epoch
    wait_for(lambda: kit.counters.get("lease.refused.lease_stale") == 1, 10, "the stale one")
    assert kit.view()["epoch"] == 3 and kit.view()["holder"] == PEER.machine_id


def test_a_store_that_is_down_shows_in_the_view_and_nobody_holds(kit: Kit) -> None:
    kit.store.down = True
    kit.tick()
    wait_for(lambda: kit.view()["store"]["reachable"] is False, 10, "the store error")
    view = kit.view()
    assert view["role"] == "standby" and "down" in view["store"]["error"]
    assert kit.counters.get("lease.alarm.store_unavailable") >= 1
    kit.store.down = False
    kit.clock.advance(TIMING.retry_ms + 1)
    kit.tick()
    wait_for(lambda: kit.view()["role"] == "awake", 10, "the lease once the store is back")


@pytest.mark.parametrize("token", ["x" * 201])  # a non-string is the wire schema's job
def test_a_bad_token_refuses_the_record(kit: Kit, token: object) -> None:
    kit.receive({"record": record(PEER, 4).to_dict(), "token": token})
    wait_for(lambda: kit.counters.get("lease.refused.lease_malformed") == 1, 10, "the refusal")
    assert kit.view()["epoch"] == 0


def test_a_store_record_from_a_stranger_counts_as_garbage_and_is_waited_out(kit: Kit) -> None:
    """Whoever can write the store cannot make the mesh wait on a record no active
    member signed: it is garbage, replaced after one whole standby wait."""
    kit.store.put_garbage(record(STRANGER, 9).encode())
    kit.tick()
    wait_for(lambda: kit.counters.get("lease.refused.lease_stranger") >= 1, 10, "the check")
    wait_for(lambda: kit.counters.get("lease.alarm.store_garbage") >= 1, 10, "the alarm")
    assert kit.view()["role"] == "standby" and kit.view()["epoch"] == 0
    kit.clock.advance(TIMING.standby_wait(TIMING.ttl_ms) + 1)
    kit.tick()
    wait_for(lambda: kit.view()["role"] == "awake", 10, "the lease after the wait")
    assert kit.store.read().record.holder == ME.machine_id  # type: ignore[union-attr]


def test_a_machine_that_cannot_speak_the_mesh_protocol_does_not_acquire_and_says_why() -> None:
    """The peer never said its versions (an older baton: protocol 1); this machine
    speaks 2 and 3 only. Once the peer is gone, the mesh is this machine's alone."""
    kit = Kit(versions=Versions("0.3.0", (2, 3)))
    try:
        for _ in range(5):
            kit.clock.advance(TIMING.ttl_ms)
            kit.tick()
        view = kit.view()
        assert view["role"] == "standby" and view["may_take_over"] is False
        assert "protocols 2-3) cannot speak protocol 1" in view["unable"]
        assert [a["kind"] for a in view["alarms"]] == ["version_skew"]
        assert kit.store.read().record is None and kit.counters.get("lease.refused") == 0
        kit.ref.tell(MembersChanged(()))
        kit.tick()
        wait_for(lambda: kit.view()["role"] == "awake", 10, "the lease")
        assert kit.view()["unable"] is None
    finally:
        kit.stop()


def took_over(before: LeaseState, now: float, reason: str = "acquired") -> Counters:
    """What the coordinator counts when ``reason`` makes ME the holder at ``now``."""
    me = SimpleNamespace(cfg=SimpleNamespace(me=ME.machine_id), counters=Counters())
    change = LeaseChanged(Phase.HOLDING, ME.machine_id, 8, reason)
    LeaseCoordinatorActor._took_over(me, change, before, now)  # type: ignore[arg-type]
    return me.counters


def test_only_a_lease_taken_from_a_silent_holder_is_a_failover() -> None:
    held = record(PEER, 7)
    silent = LeaseState(known=held, seen_at=1_000.0)
    counted = took_over(silent, 4_500.0)
    h = counted.histograms()["failover"]
    assert counted.get("lease.failovers") == 1 and (h.count, h.sum) == (1, 3.5)
    released = LeaseState(known=replace(held, ttl_ms=0), seen_at=1_000.0)
    assert took_over(released, 1_100.0).get("lease.took_released") == 1
    forced = LeaseState(known=held, seen_at=1_000.0, forced_until=900_000.0)
    assert took_over(forced, 600_000.0).get("lease.forced_takeovers") == 1
    for not_one in (
        took_over(LeaseState(), 5_000.0),  # the mesh's first lease
        took_over(LeaseState(known=record(ME, 7), seen_at=1_000.0), 5_000.0),  # its own
        took_over(silent, 5_000.0, reason="renewed"),
        took_over(forced, 600_000.0),
        took_over(released, 1_100.0),
    ):
        assert not_one.histograms() == {}
