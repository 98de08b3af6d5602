"""Benchmark: the pool's placement decisions per second, pure core only
(baton.core.pool_placement), at ``--machines`` machines and ``--topics`` topics.

- ``fresh``: every topic new (a burst after the pool is enabled), placed least-loaded
  with each placement counted into the loads of the next (``place_all``).
- ``steady``: every topic placed already and its machine alive (sticky: the common case
  of a routing decision per inbound message).
- ``failover``: one machine dead past the ttl: its topics placed elsewhere, the rest
  sticky.

Decisions per second, median over ``--runs`` runs.

    python -m tools.bench.placement [--machines 50] [--topics 10000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import time

from baton.core.pool_placement import PoolMachine, place_all
from tools.bench.timing import report

TTL_MS = 15_000
NOW_MS = 1_000_000.0


def measure(machines: int, topics: int, runs: int) -> dict[str, float]:
    pool = {f"m{i:03d}": PoolMachine(f"m{i:03d}", f"n{i}", 0, NOW_MS) for i in range(machines)}
    names = [f"-100{i}/0" for i in range(topics)]
    rates: dict[str, list[float]] = {"fresh": [], "steady": [], "failover": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        placed = place_all(names, {}, {}, pool, now_ms=NOW_MS, ttl_ms=TTL_MS)
        t1 = time.perf_counter()
        loads = {m: sum(1 for p in placed.values() if p.machine_id == m) for m in pool}
        loaded = {m: PoolMachine(m, p.nickname, loads[m], NOW_MS) for m, p in pool.items()}
        again = place_all(names, placed, {}, loaded, now_ms=NOW_MS, ttl_ms=TTL_MS)
        t2 = time.perf_counter()
        if again != placed:
            raise RuntimeError("a sticky placement moved")
        gone = next(iter(loaded))
        loaded[gone] = PoolMachine(gone, "gone", loads[gone], NOW_MS - TTL_MS - 1)
        moved = place_all(names, placed, {}, loaded, now_ms=NOW_MS, ttl_ms=TTL_MS)
        t3 = time.perf_counter()
        if any(p.machine_id == gone for p in moved.values()):
            raise RuntimeError("a dead machine kept a topic")
        for name, (start, end) in {
            "fresh": (t0, t1),
            "steady": (t1, t2),
            "failover": (t2, t3),
        }.items():
            rates[name].append(topics / (end - start))
    return {f"{k}_per_s": round(statistics.median(v)) for k, v in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--machines", type=int, default=50)
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = {
        "machines": args.machines,
        "topics": args.topics,
        "runs": args.runs,
        **measure(args.machines, args.topics, args.runs),
    }
    report(result, "pool placement decisions per second (pure core):", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
