"""Where machines reach each other, on loopback (the network namespace tests are in
test_endpoints_netns.py): a machine restarted on another wire address than it paired
with is reached again through its signed announcement, and a peer dials a machine's
endpoints in order, falling back to the next when the first does not answer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import nacl.signing
import pytest

from baton.adapters.signing import Ed25519Signer
from baton.core.announce import Announcement, sign_announcement
from baton.demo.devmesh import Machine, Mesh, free_port
from baton.stores.registry_store import JsonRegistryStore
from baton.wire.envelope import make_envelope
from tests.system.rogue import Rogue
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def peer_view(m: Machine, other: Machine) -> dict[str, Any]:
    other_id = other.card()["machine_id"]
    return next(p for p in m.status()["peers"] if p["machine_id"] == other_id)


def reached_on(m: Machine, other: Machine) -> str | None:
    """The endpoint ``m`` is connected to ``other`` on, once ``other`` answers its pings."""
    view = peer_view(m, other)
    return view["via"] if view["reachable"] else None


def test_a_machine_restarted_on_another_wire_address_is_reached_again(
    make_mesh: Callable[..., Mesh],
) -> None:
    mesh = make_mesh(2, lease_ttl_ms=4000)  # paired, so each knows the other's address
    a, b = mesh.machines
    mesh.wait_all_reachable()
    old = b.status()["wire"]
    b.stop()
    moved = f"127.0.0.1:{free_port()}"
    b.up_with("--wire", moved)
    started = time.monotonic()
    wait_for(lambda: reached_on(a, b) == f"tcp://{moved}", 60, f"{a.name} to reach {b.name}")
    took = time.monotonic() - started
    wait_for(lambda: reached_on(b, a) is not None, 30, f"{b.name} to reach {a.name}")
    assert old != f"tcp://{moved}"
    assert peer_view(a, b)["endpoints"] == [f"tcp://{moved}"]
    assert a.counter("registry.announce_accepted") >= 1
    assert a.counter("registry.announce_refused.forged") == 0
    print(f"reached again {took:.2f} s after `baton up` returned")


def test_a_peer_falls_back_to_the_next_endpoint_when_the_first_does_not_answer(
    make_mesh: Callable[..., Mesh],
) -> None:
    mesh = make_mesh(2, lease_ttl_ms=4000)
    a, b = mesh.machines
    mesh.wait_all_reachable()
    b.stop()
    dead, wire = free_port(), free_port()  # nothing listens on dead
    b.up_with("--wire", f"127.0.0.1:{wire}", "--advertise", f"127.0.0.1:{dead},auto")
    first, second = f"tcp://127.0.0.1:{dead}", f"tcp://127.0.0.1:{wire}"
    wait_for(lambda: peer_view(a, b)["endpoints"] == [first, second], 60, "the announcement")
    wait_for(lambda: reached_on(a, b) == second, 60, f"{a.name} on the second endpoint")
    assert b.status()["endpoints"] == [first, second]


def test_ipv6_and_dns_name_endpoints_are_dialled(make_mesh: Callable[..., Mesh]) -> None:
    mesh = make_mesh(2, lease_ttl_ms=4000)
    a, b = mesh.machines
    mesh.wait_all_reachable()
    for flags, want in (
        (("--wire", f"[::1]:{(six := free_port('::1'))}"), f"tcp://[::1]:{six}"),
        (("--wire", f"127.0.0.1:{(four := free_port())}", "--advertise", "localhost"),
         f"tcp://localhost:{four}"),
    ):  # fmt: skip
        b.stop()
        b.up_with(*flags)
        wait_for(lambda w=want: reached_on(a, b) == w, 60, f"{a.name} to reach {want}")  # type: ignore[misc]
        wait_for(lambda: reached_on(b, a) is not None, 30, f"{b.name} to reach {a.name}")


def doctor(m: Machine) -> tuple[int, dict[str, Any]]:
    proc = m.baton("doctor", "--json", check=False, timeout=60)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_doctor_gives_a_verdict_per_peer_endpoint_the_store_and_the_links(
    make_mesh: Callable[..., Mesh],
) -> None:
    mesh = make_mesh(2, lease_ttl_ms=4000)
    a, b = mesh.machines
    mesh.wait_all_reachable()
    code, found = doctor(a)
    assert code == 0 and found["ok"] is True, found
    by_check = {c["check"]: c for c in found["checks"]}
    assert set(by_check) == {"node", "peer", "link", "lease_store", "channel"}
    assert by_check["peer"]["target"] == f"{b.name} {b.status()['wire']}"
    assert "CURVE handshake" in by_check["peer"]["detail"]
    assert by_check["link"]["detail"].startswith(f"answers on {b.status()['wire']}")
    assert "held by" in by_check["lease_store"]["detail"]

    b.stop()
    wait_for(lambda: peer_view(a, b)["via"] is None, 30, f"{a.name} to see {b.name} gone")
    code, found = doctor(a)
    assert code == 1 and found["ok"] is False
    failed = {c["check"] for c in found["checks"] if not c["ok"]}
    assert failed == {"peer", "link"}, found
    human = a.baton("doctor", check=False).stdout
    assert f"FAIL  peer        {b.name} tcp://" in human and "no TCP connection" in human

    a.stop()  # the node down: the peers are still checked, from the saved registry
    code, found = doctor(a)
    assert code == 1 and [c["check"] for c in found["checks"]][:2] == ["node", "peer"]


def test_forged_relayed_replayed_older_and_malformed_announcements_are_refused_and_counted(
    make_mesh: Callable[..., Mesh],
) -> None:
    """Over the real wire, as bravo (its keys in the test's hands, its node stopped)."""
    mesh = make_mesh(3, lease_ttl_ms=4000, names=["alpha", "bravo", "charlie"])
    alpha, bravo, charlie = mesh.machines
    mesh.wait_all_reachable()
    seen = next(m for m in alpha.json("machines") if m["nickname"] == "bravo")
    endpoint = bravo.status()["wire"]
    bravo.stop()
    rogue = Rogue(bravo, endpoint, [alpha])
    try:
        rogue.reached_by(alpha)
        to_alpha = rogue.ids[alpha.name]
        registry = JsonRegistryStore(bravo.paths.registry).load()
        assert registry is not None and registry.me.announcement is not None
        mine = registry.me.announcement
        stranger = Ed25519Signer(rogue.id, nacl.signing.SigningKey.generate())
        charlie_id = registry.find("charlie").machine_id
        moved = ("tcp://10.9.9.9:8421",)
        sent = {
            "forged": [
                # charlie's endpoints, from bravo (a relayed or forged one), bravo-signed
                sign_announcement(Announcement(charlie_id, mine.seq + 1, moved, mine.http),
                                  _As(charlie_id, rogue.signer)).to_dict(),
                # bravo's, signed by a key that is not bravo's
                sign_announcement(replace(mine, seq=mine.seq + 2, wire=moved), stranger)
                .to_dict(),
                # bravo's, unsigned
                {**replace(mine, seq=mine.seq + 3, wire=moved).to_dict(), "signature": None},
            ],
            "stale": [
                sign_announcement(replace(mine, seq=mine.seq - 1, wire=moved), rogue.signer)
                .to_dict(),
            ],
            "malformed": [{"machine_id": rogue.id}, {**mine.to_dict(), "wire": ["udp://x:1"]}],
        }  # fmt: skip
        for n, doc in enumerate([d for docs in sent.values() for d in docs] + [mine.to_dict()]):
            body = {"announcement": doc}
            rogue.send(make_envelope("announce", rogue.id, to_alpha, body, f"an{n}"))

        def counted() -> bool:
            return all(
                alpha.counter(f"registry.announce_refused.{kind}") == len(docs)
                for kind, docs in sent.items()
            )

        wait_for(counted, 30, "every refusal counted")
        after = {m["nickname"]: m for m in alpha.json("machines")}
        assert after["bravo"]["endpoints"] == seen["endpoints"]  # nothing moved
        assert after["charlie"]["wire"] == charlie.status()["wire"]
    finally:
        rogue.stop()


class _As:
    """A signer that claims another machine's id (what a forger would try)."""

    def __init__(self, machine_id: str, inner: Ed25519Signer) -> None:
        self.machine_id, self.inner = machine_id, inner

    def sign(self, data: bytes) -> bytes:
        return self.inner.sign(data)
