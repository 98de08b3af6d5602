"""Benchmark: automatic failover after kill -9 of the holder.

Two real machines on loopback share a git lease store (a bare repository on disk) with a
short lease. Each run: read the holder's last renewal, kill -9 its supervisor and node,
and time until the standby's history shows it acquired the lease. All times are
CLOCK_BOOTTIME, one clock for every process on this host. Per run:

    takeover   kill -> the new holder's first moment as holder
    remaining  lease time the dead holder had left at the kill (last renewal + ttl - kill)
    lateness   takeover - remaining: what the protocol adds to the unavoidable wait

The killed machine is restarted (it rejoins as standby) and the roles swap.

    python -m tools.bench.failover --runs 5 --ttl-ms 3000 [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import tempfile
import time
from pathlib import Path

from baton.adapters.system_clock import SystemClock
from baton.demo.devmesh import Machine, Mesh, wait_for


def one_run(holder: Machine, standby: Machine, ttl_ms: int) -> dict[str, float]:
    me = holder.status()["machine_id"]
    wait_for(lambda: standby.status()["holder"] == me, 60, "the standby to follow")
    # A standby that just started waits a whole ttl from when it first saw the lease
    # (it cannot know when that renewal was made); kill once it has followed a while,
    # at a random point between two renewals.
    time.sleep(2 * ttl_ms / 1000 + random.uniform(0, ttl_ms / 3000))
    before = holder.status()
    asked = SystemClock().monotonic_ms()
    last_renewal = asked - before["last_renewal_ms_ago"]
    killed = SystemClock().monotonic_ms()
    holder.send_signal(signal.SIGKILL)
    epoch = before["epoch"]
    wait_for(lambda: standby.status()["epoch"] > epoch, 120, "the standby to take over", 0.02)
    acquired = next(
        h["at_ms"]
        for h in reversed(standby.status()["history"])
        if h["role"] == "awake" and h["epoch"] > epoch
    )
    takeover = acquired - killed
    remaining = last_renewal + ttl_ms - killed
    holder.stop()
    holder.up()
    return {
        "takeover_ms": takeover,
        "remaining_ms": remaining,
        "lateness_ms": takeover - remaining,
    }


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 1), "p95": round(p95, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ttl-ms", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        root = Path(tmp)
        mesh = Mesh(root, ["alpha", "bravo"])
        alpha, bravo = mesh.machines
        for m in mesh.machines:
            m.env["BATON_LEASE_TTL_MS"] = str(args.ttl_ms)
        try:
            alpha.init(None, None, "--lease-store", f"git+file://{root}/lease.git")
            bravo.init()
            mesh.pair_up()
            holder, standby = alpha, bravo
            for i in range(args.runs):
                run = one_run(holder, standby, args.ttl_ms)
                runs.append(run)
                if not args.json:
                    print(f"run {i + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in run.items()))
                holder, standby = standby, holder
        finally:
            mesh.stop()
    result = {
        "runs": len(runs),
        "ttl_ms": args.ttl_ms,
        **{key: summary([r[key] for r in runs]) for key in runs[0]},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("takeover_ms", "remaining_ms", "lateness_ms"):
            s = result[key]
            print(f"{key:<13} median {s['median']:>7} ms   p95 {s['p95']:>7} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
