"""A flood of idle connections at the holder's ports: it keeps answering and holding.

Issue 16: about 1,100 idle TCP connections to the wire port pushed a node's descriptors
past 1023 and ended its HTTP loop (select()); about 100 idle HTTP connections locked its
API out for two minutes (waitress's defaults). Now: 5,000 idle wire connections and 500
idle HTTP connections at once, and the holder answers /health within a second and keeps
its lease (the same epoch, no other holder, no restart of its node)."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from baton.demo.devmesh import Machine, Mesh
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

TTL_MS = 3000
WIRE_FLOOD, HTTP_FLOOD = 5000, 500
HOLD_S = 2 * TTL_MS / 1000 + 1  # past two ttls of renewals under the flood


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"tcp://{url}")
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@contextlib.contextmanager
def idle_connections(where: tuple[str, int], n: int) -> Iterator[list[socket.socket]]:
    """``n`` TCP connections to ``where`` that never send a byte; all closed after."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(where, timeout=10))
        yield socks
    finally:
        for s in socks:
            s.close()


def health_s(m: Machine, http: str) -> float:
    """Seconds /health took; fails past one second."""
    began = time.monotonic()
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        f"{http}/health", timeout=1.0
    ) as r:
        assert r.status == 200
    return time.monotonic() - began


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = WIRE_FLOOD + HTTP_FLOOD + 500
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"this test opens {need} sockets; the hard descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_by_the_thousand_neither_stop_nor_silence_the_holder(
    make_mesh: Callable[..., Mesh], enough_descriptors: None
) -> None:
    mesh = make_mesh(2, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS)
    alpha, bravo = mesh.machines
    wait_for(lambda: bravo.status()["holder"] == alpha.status()["machine_id"], 30, "bravo")
    card, before = alpha.card(), alpha.status()
    node_pid = alpha.live_pids()["node"]
    assert before["role"] == "awake"
    with (
        idle_connections(address(card["wire"]), WIRE_FLOOD),
        idle_connections(address(card["http"]), HTTP_FLOOD),
    ):
        took = [health_s(alpha, card["http"])]
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline:
            took.append(health_s(alpha, card["http"]))
            time.sleep(0.2)  # pacing between looks, not a wait for a condition
        during = alpha.status(timeout=5.0)
    after = alpha.status()
    print(f"/health in the flood: {len(took)} looks, max {max(took) * 1000:.0f} ms")
    assert max(took) < 1.0 and len(took) > 5
    for view in (during, after):
        assert view["role"] == "awake" and view["epoch"] == before["epoch"]
    assert bravo.status()["role"] == "standby" and bravo.status()["epoch"] == before["epoch"]
    assert alpha.live_pids()["node"] == node_pid  # the node never restarted
    # the strangers' connections are counted (a monitor may drop events past its
    # queue, so not one for one) and the HTTP listener never reached its limit
    wait_for(lambda: alpha.counter("wire.handshake_failed") > 0, 30, "failed handshakes counted")
    assert alpha.counter("http.connection_limit") == 0


def test_a_flood_of_refused_requests_is_counted_but_barely_logged(
    make_mesh: Callable[..., Mesh],
) -> None:
    """Issue 16: 20,000 refused requests added 2.45 MB to supervisor.out in 8 s (each one
    a log line, on stderr too, into a file nothing rotated)."""
    m = make_mesh(1, link=False)[0]
    http = m.card()["http"]
    logs = m.paths.logs_dir
    sizes = {name: (logs / name).stat().st_size for name in ("node.log", "supervisor.out")}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    flood = 3000
    for _ in range(flood):
        request = urllib.request.Request(f"{http}/api/status", headers={"Authorization": "x"})
        with contextlib.suppress(urllib.error.HTTPError):
            opener.open(request, timeout=10)
    assert m.counter("http.refused.unauthorized") == flood  # each one counted
    grown = {name: (logs / name).stat().st_size - size for name, size in sizes.items()}
    assert grown["node.log"] < 64 * 1024, grown  # a burst per window, not 3,000 lines
    assert grown["supervisor.out"] == 0, grown  # only what escapes logging goes there
