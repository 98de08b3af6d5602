"""Benchmark: round-trip time of baton's wire ping between two real nodes on loopback.

Starts two machines with tools/mesh.py, samples each node's last RTT once per ping
interval, and prints the median and p95 (ms). The RTT covers the whole path: actor ->
wire thread -> CURVE -> peer's wire thread -> peer's actor -> back.

    python -m tools.bench.ping_rtt --samples 30 [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from baton.demo.devmesh import Mesh


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as root:
        mesh = Mesh.of(Path(root), 2)
        try:
            mesh.init()
            mesh.up()
            mesh.link()
            mesh.wait_all_reachable()
            seen: dict[int, float] = {}
            samples: list[float] = []
            while len(samples) < args.samples:
                for i, m in enumerate(mesh.machines):
                    [peer] = m.status()["peers"]
                    if peer["pongs"] != seen.get(i) and peer["rtt_ms"] is not None:
                        seen[i] = peer["pongs"]
                        samples.append(float(peer["rtt_ms"]))
                time.sleep(0.5)
        finally:
            mesh.stop()
    result = {
        "samples": len(samples),
        "rtt_ms_median": round(statistics.median(samples), 2),
        "rtt_ms_p95": round(percentile(samples, 0.95), 2),
        "rtt_ms_min": round(min(samples), 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print("ping rtt over CURVE on loopback (ms):")
        for key, value in result.items():
            print(f"  {key:<14} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
