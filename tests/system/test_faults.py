"""The fault tools do what they say, on real parts: the lease-store faults on a real git
remote (a bare repository), and the fault-hook partitions on a mesh of real machines."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from baton.core.errors import LeaseStoreError
from baton.demo.devmesh import Machine, Mesh
from baton.stores.git_lease import GitLeaseStore, ensure_git_remote
from tests.contract.test_lease_store import A, record
from tests.system.test_lease_faults import observe_one_holder
from tests.waits import wait_for
from tools.faults import hooks, mesh_options
from tools.faults.hooks import Partitions
from tools.faults.store import StoreFaults

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]


def test_the_store_tool_slows_and_refuses_pushes_and_heals(tmp_path: Path) -> None:
    remote = tmp_path / "lease.git"
    ensure_git_remote(f"git+file://{remote}")
    store = GitLeaseStore(f"file://{remote}", tmp_path / "client" / "lease.git")
    faults = StoreFaults(remote)
    try:
        first = store.cas(None, record(A, 1))
        assert first.ok
        faults.slow(0.6)
        began = time.monotonic()
        second = store.cas(first.current.token, record(A, 1, nonce=1))
        assert second.ok and time.monotonic() - began >= 0.6
        faults.fail()
        with pytest.raises(LeaseStoreError, match=r"refused by tools/faults/store\.py"):
            store.cas(second.current.token, record(A, 1, nonce=2))  # an error, not a lost CAS
        assert store.read().token == second.current.token, "nothing was written"
        faults.heal()
        assert store.cas(second.current.token, record(A, 1, nonce=3)).ok
    finally:
        store.close()


def peers_seen(m: Machine) -> dict[str, bool]:
    """Nickname -> reachable, as ``m`` sees its peers."""
    return {p["nickname"]: bool(p["reachable"]) for p in m.status()["peers"]}


def reach(m: Machine, **expected: bool) -> Callable[[], bool]:
    return lambda: all(peers_seen(m).get(n) == ok for n, ok in expected.items())


def by_hand(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """``python -m tools.faults ARGS``, as a person runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "tools.faults", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == code, proc.stderr
    return proc


@pytest.fixture
def mesh(make_mesh: Callable[..., Mesh]) -> Mesh:
    mesh = make_mesh(3, names=["alpha", "bravo", "charlie"], lease_ttl_ms=2000, up=False)
    for m in mesh.machines:
        hooks.enable(m)
    mesh_options.save(mesh.root, {"fault_hooks": True})  # as tools/mesh.py up would
    mesh.pair_up()
    for m in mesh.machines:
        others = {o.name: True for o in mesh.machines if o is not m}
        wait_for(reach(m, **others), 60, f"{m.name} to reach every peer")
    return mesh


def test_hook_partitions_cut_what_they_name_and_heal(mesh: Mesh) -> None:
    alpha, bravo, charlie = mesh.machines
    by_hand("one-way", str(mesh.root), "alpha", "bravo")  # alpha -> bravo only
    wait_for(reach(bravo, alpha=False, charlie=True), 30, "bravo to lose alpha")
    assert peers_seen(charlie) == {"alpha": True, "bravo": True}, "only that link is cut"
    assert alpha.counter("wire.fault_dropped") > 0 and charlie.counter("wire.fault_dropped") == 0
    by_hand("heal", str(mesh.root))
    wait_for(reach(bravo, alpha=True), 30, "bravo to reach alpha again")
    refused = by_hand("isolate", str(mesh.root), "zulu", code=2)
    assert "zulu" in refused.stderr
    refused = by_hand("clock", str(mesh.root), "alpha", "+5m", code=2)
    assert "not started with --faketime" in refused.stderr

    parts = Partitions(mesh)

    holder = next(m for m in mesh.machines if m.status()["role"] == "awake")
    epoch = holder.status()["epoch"]
    parts.isolate(holder)
    others = [m for m in mesh.machines if m is not holder]
    for m in others:
        wait_for(reach(m, **{holder.name: False}), 30, f"{m.name} to lose the holder")
    # the holder still renews in the store: nobody takes over, nobody else acts
    observe_one_holder(mesh.machines, holder, epoch)
    parts.heal()
    for m in others:
        wait_for(reach(m, **{holder.name: True}), 30, f"{m.name} to reach the holder again")
    assert holder.status()["role"] == "awake" and holder.status()["epoch"] == epoch
