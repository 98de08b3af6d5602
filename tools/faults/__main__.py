"""Faults by hand, on a mesh started with ``python tools/mesh.py up 3 --dir DIR --lease
--fault-hooks --faketime`` (each machine's home is DIR/NAME; the lease store DIR/lease.git).

    python -m tools.faults kill DIR m1 [--whole]     kill -9 the node (or the whole machine)
    python -m tools.faults restart DIR m1            baton up again, as it was started
    python -m tools.faults pause DIR m1              SIGSTOP; resume DIR m1: SIGCONT
    python -m tools.faults cut DIR m1 m2             no frames between m1 and m2
    python -m tools.faults one-way DIR m1 m2         m1's frames never reach m2
    python -m tools.faults isolate DIR m1            m1 cut from every other machine
    python -m tools.faults heal DIR                  every cut removed
    python -m tools.faults clock DIR m1 +10m         m1's wall clock jumps (libfaketime)
    python -m tools.faults store DIR slow 1.5        every lease write waits 1.5 s
    python -m tools.faults store DIR fail|heal       every lease write refused / back to normal

Cuts use the transport's fault hooks (no root); tools/faults/netns.py cuts with network
namespaces and iptables as root. Cuts and clock jumps are refused (exit 2) on a mesh that
was not started with --fault-hooks / --faketime: its machines would not obey them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from baton.demo.devmesh import Mesh
from tools.faults import clock, hooks, mesh_options, signals
from tools.faults.store import StoreFaults

CUTS = "fault-cuts.json"
#: what a fault needs the mesh to have been started with (tools/mesh.py up --...)
NEEDS = {k: "fault_hooks" for k in ("cut", "one-way", "isolate", "heal")} | {"clock": "faketime"}


def mesh_at(root: Path) -> Mesh:
    names = sorted(p.name for p in root.iterdir() if (p / "machine" / "identity.json").exists())
    if not names:
        raise SystemExit(f"no machines under {root}")
    mesh = Mesh(root, names)
    for m in mesh.machines:
        mesh_options.prepare(m, root, mesh_options.load(root))
    return mesh


def partitions(mesh: Mesh) -> hooks.Partitions:
    parts = hooks.Partitions(mesh)
    saved = mesh.root / CUTS
    if saved.exists():
        parts.cuts = {(s, d) for s, d in json.loads(saved.read_text())}
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "fault",
        choices=[
            "kill",
            "restart",
            "pause",
            "resume",
            "cut",
            "one-way",
            "isolate",
            "heal",
            "clock",
            "store",
        ],
    )
    parser.add_argument("dir", type=Path, help="the mesh's directory (homes DIR/NAME)")
    parser.add_argument("args", nargs="*", help="machine names, an offset, or slow/fail/heal")
    parser.add_argument("--whole", action="store_true", help="kill: the supervisor too")
    a = parser.parse_args(argv)
    mesh = mesh_at(a.dir.absolute())
    by_name = {m.name: m for m in mesh.machines}
    options = mesh_options.load(mesh.root)
    needs = NEEDS.get(a.fault)
    if needs and not options.get(needs):
        parser.error(f"{a.fault}: the mesh was not started with --{needs.replace('_', '-')}")
    try:
        if a.fault == "store":
            store = StoreFaults(mesh.root / "lease.git")
            {"slow": lambda: store.slow(float(a.args[1])), "fail": store.fail, "heal": store.heal}[
                a.args[0]
            ]()
        elif a.fault == "clock":
            clock.jump(mesh.root / f"{by_name[a.args[0]].name}.faketime", a.args[1])
        elif a.fault == "restart":
            signals.restart(by_name[a.args[0]])
            print(f"restart: {a.args[0]} is up")
        elif a.fault in ("kill", "pause", "resume"):
            m = by_name[a.args[0]]
            hit = signals.kill(m, a.whole) if a.fault == "kill" else getattr(signals, a.fault)(m)
            print(f"{a.fault}: {m.name} pids {hit or 'none running'}")
        else:
            parts = partitions(mesh)
            machines = [by_name[n] for n in a.args]
            {
                "cut": lambda: parts.cut(*machines),
                "one-way": lambda: parts.one_way(*machines),
                "isolate": lambda: parts.isolate(*machines),
                "heal": parts.heal,
            }[a.fault]()
            (mesh.root / CUTS).write_text(json.dumps(sorted(parts.cuts)))
            print("cuts:", ", ".join(f"{s}->{d}" for s, d in sorted(parts.cuts)) or "none")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        parser.error(f"{a.fault} {' '.join(a.args)}: {exc!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
