"""A mesh whose machines each run in their own network namespace of one NetLab
(tools/faults/netns.py): set up, then torn down whatever the test did, checking that no
process, namespace, bridge or rule is left behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from baton.demo.devmesh import Mesh
from tools.faults.netns import NetLab


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


def assert_nothing_left(lab: NetLab) -> None:
    assert f"baton-{lab.tag}-" not in _out("ip", "netns", "list")
    assert lab.bridge not in _out("ip", "-o", "link")
    assert lab.tag not in _out("iptables", "-w", "-S")


@contextmanager
def placed_mesh(
    root: Path, names: list[str], env: dict[str, str] | None = None
) -> Iterator[tuple[NetLab, Mesh]]:
    """Machines ``names``, each placed in its namespace of a new lab, with ``env``; at
    the end the faults are healed (a stop should not wait out a cut), every machine is
    stopped, then the lab closed."""
    mesh = Mesh(root, names)
    lab = NetLab(names)
    left: list[int] = []
    try:
        for m in mesh.machines:
            lab.place(m)
            m.env.update(env or {})
        yield lab, mesh
    finally:
        try:
            lab.heal()
        finally:
            mesh.stop()
            left = [pid for m in mesh.machines for pid in m.survivors()]
            for name in names:
                left += [int(p) for p in _out("ip", "netns", "pids", lab.namespace(name)).split()]
            lab.close()
    assert not left, f"processes left behind: {sorted(set(left))}"
    assert_nothing_left(lab)
