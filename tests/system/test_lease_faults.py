"""Lease faults that need more than signals: wall clocks jumping by minutes on both
machines (libfaketime, installed by CI) may not change who holds. (A partition between
holder and standbys: test_faults.py with the fault hooks, test_faults_netns.py with
network namespaces as root.) ``observe_one_holder`` is shared with those."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from baton.demo.devmesh import Machine, Mesh
from tests.system.test_lease import TTL_MS, lease
from tests.waits import wait_for
from tools.faults import clock

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

OBSERVE_S = 3 * TTL_MS / 1000  # a standby's whole wait, three times over
ROUNDS = 3  # looks at every machine, at least (on a loaded host one can take OBSERVE_S)


def observe_one_holder(machines: list[Machine], holder: Machine, epoch: int) -> None:
    """Poll every machine for OBSERVE_S and ROUNDS times at least; the holder and its
    epoch must never change."""
    deadline, rounds = time.monotonic() + OBSERVE_S, 0
    holder_id = lease(holder)["machine_id"]
    while rounds < ROUNDS or time.monotonic() < deadline:
        views = {m.name: lease(m) for m in machines}
        awake = [name for name, v in views.items() if v["role"] == "awake"]
        assert awake in ([holder.name], []), f"awake: {awake}"
        for name, v in views.items():
            assert v["epoch"] == epoch and v["holder"] in (holder_id, None), (name, v)
        rounds += 1
    assert lease(holder)["role"] == "awake"


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
        observe_one_holder([alpha, bravo], alpha, epoch)
    after = len(lease(alpha)["history"]), len(lease(bravo)["history"])
    assert after == before, "a wall-clock jump changed a role"
