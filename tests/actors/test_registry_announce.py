"""RegistryActor and endpoint announcements (issue 17): it signs and sends its own to
every active peer, accepts a peer's only from that peer, signed by its key and newer than
the last, and counts and drops everything else without changing anything."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pykka
import pytest

from baton.actors.messages import (
    AnnounceSelf,
    EnvelopeReceived,
    GetSelf,
    ListMachines,
    RevokeMachine,
    Tick,
)
from baton.actors.registry_actor import ROSTER_EVERY_MS, ROSTER_RETRY_MS, RegistryActor
from baton.adapters.metrics import Counters
from baton.adapters.signing import verify_ed25519
from baton.core.announce import Announcement, sign_announcement
from baton.core.clock import FakeClock
from baton.core.registry import (
    MachineEntry,
    MachineRegistry,
    Role,
    entry_from_card,
    open_registry,
)
from baton.stores.registry_store import MemoryRegistryStore
from baton.wire.envelope import Envelope, make_envelope
from tests.signers import ForeignSigner, identity, signer

pytestmark = pytest.mark.timeout(60)

KINDS = ("forged", "stale", "malformed")
ASK_S = 5


def peer_entry(nick: str, seed: int) -> MachineEntry:
    card = {**identity(nick, seed).to_dict(), "wire": "tcp://127.0.0.1:9000"}
    card["http"] = "http://127.0.0.1:9001"
    return entry_from_card(card, 1.0)


ME, BRAVO, CHARLIE = identity("laptop", 1), peer_entry("bravo", 20), peer_entry("charlie", 30)
STRANGER = identity("mallory", 40)
B, C = BRAVO.machine_id, CHARLIE.machine_id


def announcement(seed: int, seq: int, *hosts: str, signed_by: Any = None) -> Announcement:
    hosts = hosts or ("10.0.0.5",)
    wire = tuple(f"tcp://{h}:8421" for h in hosts)
    unsigned = Announcement(identity("x", seed).machine_id, seq, wire, f"http://{hosts[0]}:8420")
    return sign_announcement(unsigned, signed_by or signer(seed))


_IDS = itertools.count()


def announce_env(sender: str, body: Any) -> Envelope:
    return make_envelope(
        "announce", sender, ME.machine_id, {"announcement": body}, f"a{next(_IDS)}"
    )


# --- the harness ----------------------------------------------------------------------


@dataclass
class Wire:
    """The fake send: records what the actor hands over; ``down`` peers are unreachable."""

    down: set[str] = field(default_factory=set)
    sent: list[Envelope] = field(default_factory=list)

    def __call__(self, env: Envelope) -> bool:
        if env.to in self.down:
            return False
        self.sent.append(env)
        return True

    def of(self, type_: str, to: str | None = None) -> list[Envelope]:
        return [e for e in self.sent if e.type == type_ and to in (None, e.to)]


@dataclass
class Listener:
    calls: list[dict[str, tuple[str, ...]]] = field(default_factory=list)

    def __call__(self, peers: Sequence[MachineEntry]) -> None:
        self.calls.append({p.machine_id: p.endpoints for p in peers})


@dataclass
class Harness:
    ref: pykka.ActorRef  # type: ignore[type-arg]
    store: MemoryRegistryStore
    wire: Wire
    listener: Listener
    counters: Counters
    clock: FakeClock

    def ask(self, message: object) -> Any:
        return self.ref.ask(message, timeout=ASK_S)

    def receive(self, env: Envelope) -> None:
        self.ask(EnvelopeReceived(env))  # answered once handled: no waiting needed

    def entry(self, machine_id: str) -> MachineEntry:
        found = [e for e in self.ask(ListMachines()) if e.machine_id == machine_id]
        assert found, f"{machine_id} is not listed"
        return found[0]

    def refusals(self) -> dict[str, int]:
        return {k: self.counters.get(f"registry.announce_refused.{k}") for k in KINDS}

    def snapshot(self) -> tuple[object, ...]:
        """Everything a refused announcement must leave as it was."""
        return (
            self.ask(ListMachines()),
            self.store.data,
            len(self.listener.calls),
            self.counters.get("registry.announce_accepted"),
            len(self.wire.sent),
        )


def founded() -> MachineRegistry:
    """This machine (laptop) awake, with bravo and charlie as standby members."""
    reg = open_registry(None, ME, "tcp://127.0.0.1:1", "http://127.0.0.1:2", 0.0)
    return reg.add(BRAVO).add(CHARLIE)


@pytest.fixture
def harness() -> Iterator[Harness]:
    store, wire, listener, counters, clock = (
        MemoryRegistryStore(),
        Wire(),
        Listener(),
        Counters(),
        FakeClock(),
    )
    ref = RegistryActor.start(
        founded(),
        store,
        clock=clock,
        listeners=[listener],
        send=wire,
        counters=counters,
        signer=signer(1),
        verify=verify_ed25519,
    )
    try:
        yield Harness(ref, store, wire, listener, counters, clock)
    finally:
        ref.stop(timeout=ASK_S)


# --- our own announcement -------------------------------------------------------------

WIRE = ("tcp://192.168.1.7:8421", "tcp://[fd7a::1]:8421")
HTTP = "http://192.168.1.7:8420"


def test_announce_self_signs_and_sends_to_every_active_peer(harness: Harness) -> None:
    mine = harness.ask(AnnounceSelf(WIRE, HTTP))
    assert isinstance(mine, Announcement)
    assert (mine.machine_id, mine.wire, mine.http) == (ME.machine_id, WIRE, HTTP)
    assert mine.seq == int(harness.clock.wall_s() * 1000)  # seq follows the wall clock
    assert mine.signature is not None
    assert verify_ed25519(ME.signing_public, mine.signable(), mine.signature)
    sent = harness.wire.of("announce")
    assert sorted(e.to for e in sent) == sorted([B, C])
    for env in sent:
        assert env.sender == ME.machine_id
        assert Announcement.from_dict(dict(env.body)["announcement"]) == mine
    assert harness.counters.get("registry.announce_sent") == 2
    me = harness.ask(GetSelf())
    assert me.endpoints == WIRE and me.wire == WIRE[0] and me.http == HTTP
    saved = harness.store.load()
    assert saved is not None and saved.me.announcement == mine  # seq survives a restart


def test_announce_self_again_with_the_same_endpoints_changes_nothing(harness: Harness) -> None:
    first = harness.ask(AnnounceSelf(WIRE, HTTP))
    sent, saved = len(harness.wire.sent), harness.store.data
    harness.clock.advance(60_000)
    again = harness.ask(AnnounceSelf(WIRE, HTTP))
    assert again == first  # same seq, same signature
    assert len(harness.wire.sent) == sent and harness.store.data == saved


def test_announce_self_with_new_endpoints_grows_the_seq(harness: Harness) -> None:
    first = harness.ask(AnnounceSelf(WIRE, HTTP))
    harness.clock.advance(1_000)
    moved = ("tcp://10.1.2.3:8421",)
    second = harness.ask(AnnounceSelf(moved, "http://10.1.2.3:8420"))
    assert second.seq > first.seq and second.wire == moved
    assert [Announcement.from_dict(dict(e.body)["announcement"]) for e in harness.wire.of(
        "announce", B
    )] == [first, second]  # fmt: skip


def test_without_a_signer_nothing_is_announced() -> None:
    wire = Wire()
    ref = RegistryActor.start(
        founded(), MemoryRegistryStore(), clock=FakeClock(), listeners=[], send=wire
    )
    try:
        assert ref.ask(AnnounceSelf(WIRE, HTTP), timeout=ASK_S) is None
        assert wire.of("announce") == []
    finally:
        ref.stop(timeout=ASK_S)


def test_peers_our_announcement_did_not_reach_get_it_at_a_tick(harness: Harness) -> None:
    harness.wire.down.add(B)
    mine = harness.ask(AnnounceSelf(WIRE, HTTP))
    assert [e.to for e in harness.wire.of("announce")] == [C]
    harness.ask(Tick(ROSTER_RETRY_MS - 1))  # too soon to try again
    assert harness.wire.of("announce", B) == []
    harness.ask(Tick(ROSTER_RETRY_MS))  # still down
    assert harness.wire.of("announce", B) == []
    harness.wire.down.clear()
    harness.ask(Tick(2 * ROSTER_RETRY_MS))
    [late] = harness.wire.of("announce", B)
    assert Announcement.from_dict(dict(late.body)["announcement"]) == mine
    assert len(harness.wire.of("announce", C)) == 1  # charlie had it: not sent again
    harness.ask(Tick(3 * ROSTER_RETRY_MS))
    assert len(harness.wire.of("announce")) == 2  # everyone has it: nothing more
    harness.ask(Tick(ROSTER_EVERY_MS))  # the periodic round repeats it to everyone
    assert len(harness.wire.of("announce", B)) == 2 and len(harness.wire.of("announce", C)) == 2


# --- a peer's announcement ------------------------------------------------------------


def test_a_members_own_announcement_updates_its_entry(harness: Harness) -> None:
    a = announcement(20, 10, "10.0.0.5", "bravo.lan", "[fd7a::5]")
    harness.receive(announce_env(B, a.to_dict()))
    got = harness.entry(B)
    assert got.announcement == a and got.endpoints == a.wire and got.http == a.http
    assert harness.listener.calls[-1][B] == a.wire  # the wire dials the new endpoints
    assert harness.counters.get("registry.announce_accepted") == 1
    assert harness.refusals() == dict.fromkeys(KINDS, 0)
    saved = harness.store.load()
    assert saved is not None and saved.get(B).announcement == a
    # the awake member carries it on to the others in its roster
    rosters = harness.wire.of("roster", C)
    assert rosters, "no roster sent to charlie"
    carried = [m for m in dict(rosters[-1].body)["machines"] if m["machine_id"] == B]
    assert Announcement.from_dict(carried[0]["announcement"]) == a


def test_a_newer_announcement_replaces_an_older_one(harness: Harness) -> None:
    harness.receive(announce_env(B, announcement(20, 10, "10.0.0.5").to_dict()))
    newer = announcement(20, 11, "10.0.0.6")
    harness.receive(announce_env(B, newer.to_dict()))
    assert harness.entry(B).endpoints == newer.wire
    assert harness.listener.calls[-1][B] == newer.wire
    assert harness.counters.get("registry.announce_accepted") == 2


def test_the_identical_repeat_is_ignored_without_a_refusal(harness: Harness) -> None:
    a = announcement(20, 10, "10.0.0.5")
    harness.receive(announce_env(B, a.to_dict()))
    before = harness.snapshot()
    harness.receive(announce_env(B, a.to_dict()))
    assert harness.snapshot() == before
    assert harness.refusals() == dict.fromkeys(KINDS, 0)


def _refused_cases() -> list[Any]:
    a = announcement(20, 10, "10.6.6.6")
    return [
        pytest.param([], (C, a.to_dict()), "forged", id="relayed-by-another-member"),
        pytest.param(
            [],
            (B, announcement(20, 10, "10.6.6.6", signed_by=ForeignSigner(B, 30)).to_dict()),
            "forged",
            id="signed-by-another-members-key",
        ),
        pytest.param(
            [],
            (B, {**a.to_dict(), "signature": None}),
            "forged",
            id="unsigned",
        ),
        pytest.param(
            [],
            (B, {**a.to_dict(), "seq": 11}),
            "forged",
            id="changed-after-signing",
        ),
        pytest.param(
            [],
            (STRANGER.machine_id, announcement(40, 10, "10.6.6.6").to_dict()),
            "forged",
            id="a-strangers",
        ),
        pytest.param(
            [],
            (B, announcement(1, 10**13, "10.6.6.6", signed_by=ForeignSigner(ME.machine_id, 20))),
            "forged",
            id="naming-us",
        ),
        pytest.param(
            [announcement(20, 10, "10.0.0.5")],
            (B, announcement(20, 9, "10.6.6.6").to_dict()),
            "stale",
            id="older",
        ),
        pytest.param(
            [announcement(20, 10, "10.0.0.5")],
            (B, announcement(20, 10, "10.6.6.6").to_dict()),
            "stale",
            id="same-seq-other-endpoints",
        ),
        pytest.param(
            [announcement(20, 10, "10.0.0.5"), announcement(20, 12, "10.0.0.7")],
            (B, announcement(20, 10, "10.0.0.5").to_dict()),
            "stale",
            id="replayed",
        ),
        pytest.param([], (B, {}), "malformed", id="empty"),
        pytest.param([], (B, {**a.to_dict(), "seq": 0}), "malformed", id="seq-0"),
        pytest.param([], (B, {**a.to_dict(), "wire": []}), "malformed", id="no-wire"),
        pytest.param(
            [], (B, {**a.to_dict(), "wire": ["udp://x:1"]}), "malformed", id="bad-endpoint"
        ),
        pytest.param(
            [], (B, {**a.to_dict(), "signature": "AAAA"}), "malformed", id="short-signature"
        ),
        pytest.param([], (B, {**a.to_dict(), "more": 1}), "malformed", id="extra-field"),
    ]


@pytest.mark.parametrize("accepted, incoming, kind", _refused_cases())
def test_refused_announcements_change_nothing_and_are_counted(
    harness: Harness, accepted: list[Announcement], incoming: tuple[str, Any], kind: str
) -> None:
    for earlier in accepted:
        harness.receive(announce_env(earlier.machine_id, earlier.to_dict()))
    assert harness.refusals() == dict.fromkeys(KINDS, 0)
    before = harness.snapshot()
    sender, body = incoming
    if isinstance(body, Announcement):
        body = body.to_dict()
    harness.receive(announce_env(sender, body))
    assert harness.snapshot() == before
    assert harness.refusals() == {k: int(k == kind) for k in KINDS}
    assert harness.ref.is_alive()


def test_a_revoked_members_announcement_is_forged(harness: Harness) -> None:
    harness.ask(RevokeMachine("bravo", "lost"))
    before = harness.snapshot()
    harness.receive(announce_env(B, announcement(20, 10, "10.6.6.6").to_dict()))
    assert harness.snapshot() == before
    assert harness.refusals() == {"forged": 1, "stale": 0, "malformed": 0}


def test_a_standby_accepts_announcements_but_sends_no_roster() -> None:
    """Every member keeps a peer's newest announcement; only the awake one passes it on."""
    awake = entry_from_card(
        {**ME.to_dict(), "wire": "tcp://127.0.0.1:1", "http": "http://127.0.0.1:2"}, 0.0
    )
    bravo_id = identity("bravo", 20)
    reg = open_registry(None, bravo_id, "tcp://127.0.0.1:3", "http://127.0.0.1:4", 0.0)
    reg = MachineRegistry(
        bravo_id.machine_id,
        {
            bravo_id.machine_id: replace(reg.me, role=Role.STANDBY),
            ME.machine_id: replace(awake, role=Role.AWAKE),
            C: CHARLIE,
        },
    )
    wire, counters = Wire(), Counters()
    ref = RegistryActor.start(
        reg,
        MemoryRegistryStore(),
        clock=FakeClock(),
        listeners=[],
        send=wire,
        counters=counters,
        verify=verify_ed25519,
    )
    try:
        a = announcement(30, 10, "10.0.0.9")
        env = make_envelope("announce", C, bravo_id.machine_id, {"announcement": a.to_dict()}, "x")
        ref.ask(EnvelopeReceived(env), timeout=ASK_S)
        listed = {e.machine_id: e for e in ref.ask(ListMachines(), timeout=ASK_S)}
        assert listed[C].endpoints == a.wire
        assert counters.get("registry.announce_accepted") == 1
        assert wire.of("roster") == []
    finally:
        ref.stop(timeout=ASK_S)


# --- the addresses peers see us come from ("seen") ---------------------------------------


def seen_env(sender: str, address: str) -> Envelope:
    return make_envelope("seen", sender, ME.machine_id, {"address": address}, f"s{next(_IDS)}")


@pytest.mark.parametrize("observe", [True, False])
def test_an_address_a_peer_sees_us_from_is_announced_after_ours_when_we_bind_all(
    observe: bool,
) -> None:
    store, wire, listener, counters, clock = (
        MemoryRegistryStore(), Wire(), Listener(), Counters(), FakeClock(),
    )  # fmt: skip
    ref = RegistryActor.start(
        founded(), store, clock=clock, listeners=[listener], send=wire, counters=counters,
        signer=signer(1), verify=verify_ed25519, observe=observe,
    )  # fmt: skip
    h = Harness(ref, store, wire, listener, counters, clock)
    try:
        h.ask(Tick(h.clock.monotonic_ms()))  # the first round
        first = h.ask(AnnounceSelf(WIRE, HTTP))
        for sender, address in (
            (STRANGER.machine_id, "198.51.100.9"),  # not a member: ignored
            (B, "127.0.0.1"),  # loopback: no peer could dial it
            (B, "::ffff:127.0.0.1"),  # nor as a dual-stack socket names it
            (B, "fe80::1"),  # link-local: neither
            (B, "::ffff:169.254.1.1"),
            (B, "255.255.255.255"),  # reserved
        ):
            h.receive(seen_env(sender, address))

        def next_round() -> Announcement:
            h.clock.advance(ROSTER_EVERY_MS)
            h.ask(Tick(h.clock.monotonic_ms()))
            return h.ask(GetSelf()).announcement  # type: ignore[no-any-return]

        assert next_round() == first
        for address in ("203.0.113.7", "198.51.100.2") * 10:  # flapping, at once ...
            h.receive(seen_env(B, address))
        h.receive(seen_env(C, "192.168.1.7"))  # one of ours already
        h.receive(seen_env(C, "::ffff:203.0.113.7"))  # then as a dual-stack socket says
        assert h.ask(GetSelf()).announcement == first  # ... changes nothing until the round
        mine = next_round()
        if not observe:
            assert mine == first
            return
        assert mine.wire == (*WIRE, "tcp://198.51.100.2:8421", "tcp://203.0.113.7:8421")
        assert mine.seq > first.seq
        assert next_round() == mine  # nothing new since: no new announcement
        again = h.ask(AnnounceSelf(WIRE, HTTP))  # the watcher looks again: it stays
        assert again == mine
    finally:
        ref.stop(timeout=ASK_S)
