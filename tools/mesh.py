"""Start, show and stop N linked baton machines on loopback by hand (baton.demo.devmesh).

python tools/mesh.py up 3 --dir /tmp/mesh     # init, start and link 3 machines
python tools/mesh.py status --dir /tmp/mesh
python tools/mesh.py down --dir /tmp/mesh

With --lease the machines share a git lease store (DIR/lease.git) and are paired for
real instead of linked; --fault-hooks and --faketime start them ready for
`python -m tools.faults` (partitions without root; wall-clock jumps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from baton.demo.devmesh import Mesh

if not __package__:  # run as `python tools/mesh.py`: the repository root is not on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.faults import mesh_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("action", choices=["up", "status", "down"])
    parser.add_argument("count", nargs="?", type=int, default=3)
    parser.add_argument("--dir", required=True, type=Path, help="where the homes live")
    parser.add_argument("--lease", action="store_true", help="a git lease store; real pairing")
    parser.add_argument("--ttl-ms", type=int, default=3000, help="with --lease: the lease ttl")
    parser.add_argument("--fault-hooks", action="store_true", help="obey tools/faults cuts")
    parser.add_argument("--faketime", action="store_true", help="wall clocks under libfaketime")
    args = parser.parse_args(argv)
    root = args.dir.absolute()
    if args.action == "up":
        mesh = Mesh.of(root, args.count)
        options = {
            "lease": args.lease,
            "ttl_ms": args.ttl_ms if args.lease else None,
            "fault_hooks": args.fault_hooks,
            "faketime": args.faketime,
        }
        try:
            root.mkdir(parents=True, exist_ok=True)
            mesh_options.save(root, options)
            for m in mesh.machines:
                mesh_options.prepare(m, root, options)
            if args.lease:
                mesh[0].init(None, None, "--lease-store", f"git+file://{root}/lease.git")
                for m in mesh.machines[1:]:
                    m.init()
                mesh.pair_up()
            else:
                mesh.init()
                mesh.up()
                mesh.link()
            mesh.wait_all_reachable()
        except BaseException:
            mesh.stop()
            raise
        for m in mesh.machines:
            print(f"{m.name}: baton status --home {m.home}")
        return 0
    names = sorted(p.name for p in root.iterdir() if (p / "machine" / "identity.json").exists())
    mesh = Mesh(root, names)
    if args.action == "status":
        for m in mesh.machines:
            print(m.baton("status", check=False).stdout or f"{m.name}: not running")
    else:
        mesh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
