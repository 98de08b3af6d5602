"""Start, show and stop N linked baton machines on loopback by hand (baton.devmesh).

python tools/mesh.py up 3 --dir /tmp/mesh     # init, start and link 3 machines
python tools/mesh.py status --dir /tmp/mesh
python tools/mesh.py down --dir /tmp/mesh
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from baton.devmesh import Mesh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("action", choices=["up", "status", "down"])
    parser.add_argument("count", nargs="?", type=int, default=3)
    parser.add_argument("--dir", required=True, type=Path, help="where the homes live")
    args = parser.parse_args(argv)
    root = args.dir.absolute()
    if args.action == "up":
        mesh = Mesh.of(root, args.count)
        try:
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
