"""Partitions through the transport's fault hooks (baton.wire.fault_hooks): no root, no
firewall, and one-way cuts that a TCP-level firewall cannot make.

Every machine of a mesh gets its own fault file (``enable(machine)`` before it starts:
``BATON_FAULT_FILE=<home>/fault-hooks.json``). A Partitions object keeps the set of
directed cuts (src -> dst: nothing src sends reaches dst) and rewrites every machine's
file from it: src drops frames to dst, dst drops frames from src, so a cut holds even
if one side's file were late. Nodes look at their file at most every 100 ms.

    parts = Partitions(mesh)
    parts.cut(alpha, bravo)        # both ways
    parts.one_way(alpha, bravo)    # alpha's frames never reach bravo; bravo's reach alpha
    parts.isolate(alpha)           # alpha cut from every other machine
    parts.heal()

Only the wire between machines is cut: each machine still reaches the lease store and
the chat service (use netns.py, as root, to cut those too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from baton.demo.devmesh import Machine, Mesh
from baton.stores.identity_store import load_public_identity

FILE = "fault-hooks.json"


def enable(m: Machine) -> Path:
    """Point ``m``'s node at its fault file (takes effect at its next start)."""
    path = m.home / FILE
    m.env["BATON_FAULT_FILE"] = str(path)
    return path


class Partitions:
    def __init__(self, mesh: Mesh) -> None:
        self.machines = list(mesh.machines)
        self.cuts: set[tuple[str, str]] = set()  # (src name, dst name)
        self._ids: dict[str, str] = {}

    def _id(self, m: Machine) -> str:
        if m.name not in self._ids:  # read from the home: a fault is made in a moment
            self._ids[m.name] = load_public_identity(m.home).machine_id
        return self._ids[m.name]

    def cut(self, a: Machine, b: Machine) -> None:
        self.cuts |= {(a.name, b.name), (b.name, a.name)}
        self._write()

    def one_way(self, src: Machine, dst: Machine) -> None:
        self.cuts.add((src.name, dst.name))
        self._write()

    def isolate(self, m: Machine) -> None:
        for other in self.machines:
            if other is not m:
                self.cuts |= {(m.name, other.name), (other.name, m.name)}
        self._write()

    def heal(self) -> None:
        self.cuts.clear()
        self._write()

    def _write(self) -> None:
        by_name = {m.name: m for m in self.machines}
        for m in self.machines:
            plan = {
                "drop_to": sorted(self._id(by_name[d]) for s, d in self.cuts if s == m.name),
                "drop_from": sorted(self._id(by_name[s]) for s, d in self.cuts if d == m.name),
            }
            path = Path(m.env.get("BATON_FAULT_FILE") or m.home / FILE)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(plan))
            os.replace(tmp, path)
