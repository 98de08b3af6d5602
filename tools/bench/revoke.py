"""Benchmark: how fast a revocation reaches the other members.

Pairs three real machines on loopback (alpha awake; bravo and charlie join with codes),
then repeatedly: `baton machines remove charlie` on alpha, and time until bravo's
registry shows charlie revoked (its allow-list changes in the same step); then charlie
re-pairs with a fresh code for the next round. Prints median and max in ms.

    python -m tools.bench.revoke --rounds 5 [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from baton.demo.devmesh import Mesh, wait_for
from baton.node.client import NodeClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as root:
        mesh = Mesh(Path(root), ["alpha", "bravo", "charlie"])
        alpha, bravo, charlie = mesh.machines
        try:
            mesh.init()
            alpha.up()
            for m in (bravo, charlie):
                session = alpha.json("pair")
                m.json("join", session["url"], "--code", session["code"], "--yes")
                m.up()
            client = NodeClient(bravo.home, timeout=5)

            def charlie_on_bravo() -> str:
                rows = client.get("/api/machines")
                return str(next(r["status"] for r in rows if r["nickname"] == "charlie"))

            for _ in range(args.rounds):
                wait_for(lambda: charlie_on_bravo() == "active", 60, "charlie active on bravo")
                NodeClient(alpha.home).post("/api/machines/remove", {"name": "charlie"})
                started = time.perf_counter()
                while charlie_on_bravo() != "revoked":
                    time.sleep(0.002)
                samples.append((time.perf_counter() - started) * 1000)
                charlie.json("down")
                session = alpha.json("pair")
                charlie.json("join", session["url"], "--code", session["code"], "--yes")
                charlie.up()
        finally:
            mesh.stop()
    result = {
        "rounds": len(samples),
        "median_ms": round(statistics.median(samples), 1),
        "max_ms": round(max(samples), 1),
    }
    print(
        json.dumps(result)
        if args.json
        else f"revocation reaches another member: median {result['median_ms']} ms, "
        f"max {result['max_ms']} ms over {result['rounds']} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
