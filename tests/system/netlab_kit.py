"""A mesh whose machines each run in their own network namespace of one NetLab
(tools/faults/netns.py): set up, then torn down whatever the test did, checking that no
process, namespace, bridge or rule is left behind."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from baton.demo.devmesh import Mesh
from tests.waits import wait_for
from tools.faults.netns import NetLab


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


def _in_namespaces(lab: NetLab, names: list[str]) -> list[int]:
    return [int(p) for n in names for p in _out("ip", "netns", "pids", lab.namespace(n)).split()]


def _left_in(lab: NetLab, names: list[str]) -> list[int]:
    """The processes still in the machines' namespaces once every machine has stopped.
    A machine stopped with SIGKILL orphans its helpers (a git in flight, an agent worker),
    which end on their own soon after: they get a few seconds, as a stop does."""
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not _in_namespaces(lab, names), 10, "the namespaces to empty")
    return _in_namespaces(lab, names)


def _described(pids: list[int]) -> str:
    """Each pid with its command line, parent and state (what a failure needs to say)."""
    out = []
    for pid in sorted(set(pids)):
        try:
            proc = psutil.Process(pid)
            out.append(f"{pid} (parent {proc.ppid()}, {proc.status()}): {proc.cmdline()}")
        except psutil.Error:
            out.append(f"{pid} (gone)")
    return "; ".join(out)


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
            left += _left_in(lab, names)
            lab.close()
    assert not left, f"processes left behind: {_described(left)}"
    assert_nothing_left(lab)
