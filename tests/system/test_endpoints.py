"""Where machines reach each other, on loopback (the network namespace tests are in
test_endpoints_netns.py): a machine restarted on another wire address than it paired
with is reached again through its signed announcement, and a peer dials a machine's
endpoints in order, falling back to the next when the first does not answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from baton.devmesh import Machine, Mesh, free_port, wait_for

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
