"""The root-only partition tool (tools/faults/netns.py): plain sockets across its
namespaces show that cut, one-way, isolate and heal do what they say and that close
leaves nothing behind; then a real three-machine mesh in a lab keeps one holder while
the holder is isolated from every peer (it still renews in the shared git store).
Needs root, ip and iptables: CI runs as root, so these run there."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.demo.devmesh import Machine, Mesh
from tests.system.netlab_kit import assert_nothing_left, placed_mesh
from tests.system.test_lease import TTL_MS, holds, lease
from tests.system.test_lease_faults import observe_one_holder
from tests.waits import wait_for
from tools.faults.netns import NetLab, NetLabError, available

pytestmark = [pytest.mark.system, pytest.mark.root, pytest.mark.timeout(300)]

REASON = available()
if REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=f"netns faults unavailable: {REASON}"))

PORT = 7001
SERVE = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = server.accept()
    conn.sendall(b"ok")
    conn.close()
"""
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0) as conn:
        sys.exit(0 if conn.recv(2) == b"ok" else 1)
except OSError:
    sys.exit(1)
"""
RECEIVE = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
sock.settimeout(1.5)
print("ready", flush=True)
try:
    sock.recv(16)
except OSError:
    sys.exit(1)
"""
SEND = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(10):
    sock.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.05)
"""


def python(lab: NetLab, where: str | None, script: str, *args: str) -> list[str]:
    """A Python one-off inside ``where``'s namespace (None: the root namespace)."""
    return [*(lab.prefix(where) if where else []), sys.executable, "-I", "-c", script, *args]


def tcp(lab: NetLab, src: str | None, dst_ip: str) -> bool:
    """Does a TCP connection from ``src`` to the server at ``dst_ip`` get its answer?"""
    done = subprocess.run(python(lab, src, CONNECT, dst_ip, str(PORT)), timeout=30)
    return done.returncode == 0


def udp(lab: NetLab, src: str, dst: str) -> bool:
    """Does a datagram from ``src`` arrive at ``dst`` (no answer needed)?"""
    cmd = python(lab, dst, RECEIVE, lab.address(dst), str(PORT))
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as receiver:
        try:
            assert receiver.stdout is not None
            assert select.select([receiver.stdout], [], [], 30)[0], "the receiver never started"
            assert receiver.stdout.readline() == "ready\n"
            subprocess.run(python(lab, src, SEND, lab.address(dst), str(PORT)), timeout=30)
            return receiver.wait(timeout=30) == 0
        finally:
            receiver.kill()


class GatewayServer:
    """The TCP server of SERVE, on the lab's gateway in this (root) namespace."""

    def __init__(self, host: str) -> None:
        self.server = socket.create_server((host, PORT))
        self.server.settimeout(0.1)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"ok")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.server.close()


def test_cut_one_way_isolate_and_heal_with_plain_sockets() -> None:
    lab = NetLab(["alpha", "bravo"])
    a, b, gw = lab.address("alpha"), lab.address("bravo"), lab.gateway
    servers: list[subprocess.Popen[bytes]] = []
    gateway: GatewayServer | None = None
    try:
        for name in lab.names:
            servers.append(subprocess.Popen(python(lab, name, SERVE, lab.address(name), str(PORT))))
        gateway = GatewayServer(gw)
        wait_for(lambda: tcp(lab, "alpha", b) and tcp(lab, "bravo", a), 20, "the servers")
        assert tcp(lab, "alpha", gw) and tcp(lab, None, a)
        assert udp(lab, "alpha", "bravo") and udp(lab, "bravo", "alpha")

        lab.cut("alpha", "bravo")
        assert not tcp(lab, "alpha", b) and not tcp(lab, "bravo", a)
        assert tcp(lab, "alpha", gw) and tcp(lab, "bravo", gw), "a cut is between two only"
        lab.heal()
        assert tcp(lab, "alpha", b) and tcp(lab, "bravo", a)

        lab.one_way("alpha", "bravo")
        assert not udp(lab, "alpha", "bravo") and udp(lab, "bravo", "alpha")
        # over TCP a one-way loss breaks the handshake both ways
        assert not tcp(lab, "alpha", b) and not tcp(lab, "bravo", a)
        lab.heal()

        lab.isolate("alpha")
        assert not tcp(lab, "alpha", b) and not tcp(lab, "bravo", a)
        assert not tcp(lab, "alpha", gw) and not tcp(lab, None, a)
        assert tcp(lab, "bravo", gw) and tcp(lab, None, b)
        lab.heal()
        assert tcp(lab, "alpha", b) and tcp(lab, "alpha", gw) and tcp(lab, None, a)
    finally:
        for server in servers:
            server.kill()
            server.wait(timeout=30)
        if gateway:
            gateway.stop()
        lab.close()
    lab.close()  # idempotent
    assert_nothing_left(lab)


def test_a_failed_setup_removes_what_it_made_and_only_that() -> None:
    def bridges() -> set[str]:
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=30)
        return {word for word in out.stdout.split() if word.startswith("bt-")}

    taken = NetLab(["bravo"])  # holds the namespace the next lab wants
    try:
        before = bridges()
        with pytest.raises(NetLabError, match=r"`ip netns add baton-.*-bravo` exited 1: .+"):
            NetLab(["alpha", "bravo"], tag=taken.tag)
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
        assert f"baton-{taken.tag}-alpha" not in out.stdout
        assert f"baton-{taken.tag}-bravo" in out.stdout, "the lab removed what it did not make"
        assert bridges() == before, "the failed lab left its bridge or a veth"
        rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, timeout=30)
        assert rules.stdout.count(taken.comment) == 2, "only the first lab's two ACCEPTs"
    finally:
        taken.close()
    assert_nothing_left(taken)


def reaches(m: Machine, machine_id: str) -> bool:
    return any(p["reachable"] for p in lease(m)["peers"] if p["machine_id"] == machine_id)


@pytest.fixture
def lab_mesh(tmp_path: Path) -> Iterator[tuple[NetLab, Mesh]]:
    """Three machines, each placed in its namespace of one lab; stopped, then the lab
    closed, whatever the test did."""
    env = {"BATON_LEASE_TTL_MS": str(TTL_MS)}
    with placed_mesh(tmp_path / "mesh", ["alpha", "bravo", "charlie"], env) as placed:
        yield placed


def test_an_isolated_holder_that_still_reaches_the_store_keeps_the_lease(
    lab_mesh: tuple[NetLab, Mesh],
) -> None:
    lab, mesh = lab_mesh
    first, *others = mesh.machines
    first.init(8420, 8421, "--lease-store", f"git+file://{mesh.root}/lease.git")
    for m in others:
        m.init(8420, 8421)
    mesh.pair_up()

    def seen_holder() -> str | None:
        holders = {lease(m)["holder"] for m in mesh.machines}
        return holders.pop() if len(holders) == 1 else None

    holder_id = wait_for(seen_holder, 60, "every machine to see one holder")
    holder = next(m for m in mesh.machines if lease(m)["machine_id"] == holder_id)
    standbys = [m for m in mesh.machines if m is not holder]
    epoch = lease(holder)["epoch"]
    mesh.wait_all_reachable()

    lab.isolate(holder.name)

    def isolation_seen() -> bool:
        holder_sees = any(p["reachable"] for p in lease(holder)["peers"])
        return not holder_sees and not any(reaches(m, holder_id) for m in standbys)

    wait_for(isolation_seen, 60, "the holder and the standbys to lose each other")
    observe_one_holder(mesh.machines, holder, epoch)

    lab.heal()
    mesh.wait_all_reachable()
    assert holds(holder, epoch)
    assert all(lease(m)["holder"] == holder_id and lease(m)["epoch"] == epoch for m in standbys)
