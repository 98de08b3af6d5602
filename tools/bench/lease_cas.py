"""Benchmark: how long the git lease store's renewal (a CAS) takes, against a bare
repository on disk (the remote the demo and CI use). A holder must see each renewal
land within ttl * (1 - rho) - margin - renew interval (about 0.57 ttl), or it stands by
until one does; on a loaded host this is what keeps a holder awake.

Runs ``--writes`` renewals one after another, as a holder does, and prints the median
and p95 of each (ms), the write of the three objects and the push apart.
``--load N`` runs N busy processes beside it (a loaded host; they stop with it).

    python -m tools.bench.lease_cas [--writes 60] [--load 0] [--json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from baton.core.lease_record import LeaseRecord
from baton.stores.git_lease import GitLeaseStore, ensure_git_remote, git_url
from tools.bench.timing import busy, report, summary

HOLDER = "m_aaaaaaaaaaaaaaaa"


def measure(root: Path, writes: int) -> dict[str, list[float]]:
    spec = f"git+file://{root / 'remote.git'}"
    ensure_git_remote(spec)
    store = GitLeaseStore(git_url(spec), root / "private.git")
    times: dict[str, list[float]] = {"cas": [], "objects": [], "push": []}
    token = None
    try:
        for nonce in range(writes):
            record = LeaseRecord(HOLDER, 1, nonce, 2000, time.time())
            t0 = time.perf_counter()
            result = store.cas(token, record)
            t1 = time.perf_counter()
            if not result.ok:
                raise RuntimeError(f"renewal {nonce} lost its CAS: {result.current}")
            token = result.current.token
            times["cas"].append((t1 - t0) * 1000)
        for nonce in range(writes, 2 * writes):  # the same again, in its two parts
            record = LeaseRecord(HOLDER, 1, nonce, 2000, time.time())
            t0 = time.perf_counter()
            commit = store._commit(record)
            t1 = time.perf_counter()
            pushed = store._push(token, commit)
            t2 = time.perf_counter()
            if pushed.returncode != 0:
                raise RuntimeError(f"push {nonce} failed: {pushed.stderr[-500:]}")
            token = commit
            times["objects"].append((t1 - t0) * 1000)
            times["push"].append((t2 - t1) * 1000)
    finally:
        store.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=60)
    parser.add_argument("--load", type=int, default=0, help="busy processes beside it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with busy(args.load), tempfile.TemporaryDirectory(prefix="baton-bench-") as root:
        times = measure(Path(root), args.writes)
    result = {"writes": args.writes, "load": args.load, **summary(times)}
    report(result, "git lease store renewal (ms):", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
