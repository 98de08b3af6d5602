"""Lease faults that need more than signals: a network partition between holder and
standby (iptables on loopback: root only, so it runs in CI) and wall clocks jumping by
minutes on both machines (libfaketime, installed by CI). Neither may change who holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.devmesh import Machine, Mesh, wait_for
from tests.system.test_lease import TTL_MS, lease
from tools.faults import clock

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

OBSERVE_S = 3 * TTL_MS / 1000  # a standby's whole wait, three times over


def observe_one_holder(machines: list[Machine], holder: Machine, epoch: int) -> int:
    """Poll every machine for OBSERVE_S; the holder and its epoch must never change.
    Returns how many rounds were observed."""
    deadline, rounds = time.monotonic() + OBSERVE_S, 0
    holder_id = lease(holder)["machine_id"]
    while time.monotonic() < deadline:
        views = {m.name: lease(m) for m in machines}
        awake = [name for name, v in views.items() if v["role"] == "awake"]
        assert awake in ([holder.name], []), f"awake: {awake}"
        for name, v in views.items():
            assert v["epoch"] == epoch and v["holder"] in (holder_id, None), (name, v)
        rounds += 1
    assert lease(holder)["role"] == "awake"
    return rounds


# --- a partition between holder and standby, both reaching the store ---------------


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def firewall() -> Iterator[Callable[[int], None]]:
    """cut(port): drop every loopback packet to or from ``port``; rules removed after."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("needs root and iptables (CI runs it as root)")
    tag = f"baton-test-{uuid.uuid4().hex[:8]}"
    rules: list[list[str]] = []

    def cut(port: int) -> None:
        for direction in ("--dport", "--sport"):
            rule = ["INPUT", "-i", "lo", "-p", "tcp", direction, str(port)]
            rule += ["-m", "comment", "--comment", tag, "-j", "DROP"]
            _iptables("-I", *rule)
            rules.append(rule)

    try:
        yield cut
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", *rule], capture_output=True, timeout=30)
        listed = subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=30)
        assert tag not in listed.stdout, "a test firewall rule was left behind"


@pytest.mark.root
def test_a_partition_between_holder_and_standby_keeps_one_holder(
    make_mesh: Callable[..., Mesh], firewall: Callable[[int], None]
) -> None:
    mesh = make_mesh(2, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS)
    alpha, bravo = mesh.machines
    wait_for(lambda: lease(bravo)["holder"] == lease(alpha)["machine_id"], 30, "bravo to see")
    epoch = lease(alpha)["epoch"]
    for m in (alpha, bravo):
        firewall(int(lease(m)["wire"].rsplit(":", 1)[1]))
    wait_for(lambda: not any(p["reachable"] for p in lease(bravo)["peers"]), 30, "the partition")
    assert observe_one_holder([alpha, bravo], alpha, epoch) > 0
    assert not [h for h in lease(bravo)["history"] if h["role"] == "awake"]


# --- wall clocks jumping ------------------------------------------------------------


def test_wall_clock_jumps_on_either_machine_change_nothing(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    if clock.libfaketime() is None:
        pytest.skip("libfaketime is not installed (CI installs it)")
    mesh = make_mesh(2, up=False, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS)
    offsets: dict[str, Path] = {}
    for m in mesh.machines:
        offsets[m.name] = tmp_path / f"{m.name}.faketime"
        m.env.update(clock.faketime_env(offsets[m.name]))
    mesh.pair_up()
    alpha, bravo = mesh.machines
    wait_for(lambda: lease(bravo)["holder"] == lease(alpha)["machine_id"], 30, "bravo to see")
    epoch = lease(alpha)["epoch"]
    before = len(lease(alpha)["history"]), len(lease(bravo)["history"])
    for alpha_jump, bravo_jump, shift_s in (("+10m", "-7m", 600), ("-10m", "+5m", -600)):
        clock.jump(offsets["alpha"], alpha_jump)
        clock.jump(offsets["bravo"], bravo_jump)
        # the holder's wall clock did jump: a pairing code's expiry is wall time + 120 s
        wait_for(
            lambda s=shift_s: abs(alpha.json("pair")["expires_at"] - (time.time() + s + 120)) < 30,
            30,
            f"alpha's wall clock to move by {alpha_jump}",
        )
        assert observe_one_holder([alpha, bravo], alpha, epoch) > 0
    after = len(lease(alpha)["history"]), len(lease(bravo)["history"])
    assert after == before, "a wall-clock jump changed a role"
