"""Benchmark: how soon machines hear each other again after one's address changes (root).

Three machines, each in its own network namespace (tools/faults/netns.py), started with
``--listen 0.0.0.0`` and paired. Each run takes one machine (in turn: the holder, then a
standby, ...) off its address and gives it a new one (``ip addr del``, then ``add``: a
laptop on another network), and times, from the moment the new address is there, until
every other machine hears it on the new address (a pong newer than the change, on a link
connected there) and it hears every other machine again. Per run: the slowest of those.

    sudo python -m tools.bench.renumber --runs 6 [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baton.demo.devmesh import Machine, Mesh
from tools.bench.failover import summary
from tools.faults.netns import NetLab, available

#: Inside an observer's namespace: wait until its node hears ``peer`` on an endpoint
#: holding ``want`` with a pong newer than the change (wall time ``since``); print the
#: seconds from the change.
HEARD = """
import sys, time
from pathlib import Path
from baton.node.client import NodeClient
home, peer, want, since, patience = sys.argv[1:6]
client = NodeClient(Path(home), timeout=5)
while time.time() - float(since) < float(patience):
    took = time.time() - float(since)
    try:
        peers = client.get("/api/status")["peers"]
    except Exception:
        peers = []
    for p in peers:
        age = p["last_seen_ms_ago"]
        if p["machine_id"] == peer and want in (p["via"] or "") and age is not None \\
                and age / 1000 < took:
            print(f"{took:.3f}")
            sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
"""


def machine_id(m: Machine) -> str:
    return str(m.card()["machine_id"])


def heard(since: float, *waits: tuple[Machine, Machine, str]) -> list[float]:
    """For each (observer, peer, want), at once: the seconds from ``since`` (a change)
    until ``observer`` hears ``peer`` on an endpoint holding ``want``."""
    procs = []
    try:
        for observer, peer, want in waits:
            cmd = [*observer.prefix, sys.executable, "-P", "-c", HEARD, str(observer.home)]
            args = [machine_id(peer), want, str(since), "60"]
            procs.append(subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, text=True))
        took = []
        for proc, (observer, peer, want) in zip(procs, waits, strict=True):
            out, _ = proc.communicate(timeout=90)
            if proc.returncode != 0:
                raise AssertionError(f"{observer.name} never heard {peer.name} at {want}")
            took.append(float(out))
        return took
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


def renumber(lab: NetLab, mesh: Mesh, m: Machine, old: str, host: int) -> tuple[str, float]:
    """Move ``m`` from ``old`` to a new address; (the new address, the slowest time in
    seconds until every machine hears every other on the addresses now in use)."""
    lab.remove_address(m.name, old)  # first: the kernel drops secondaries with a primary
    new = lab.add_address(m.name, host)  # a new lease on another network
    since = time.time()
    others = [o for o in mesh.machines if o is not m]
    times = heard(since, *[(o, m, f"//{new}:") for o in others], *[(m, o, ":") for o in others])
    return new, max(times)


def listen_up(mesh: Mesh, *first_args: str) -> None:
    """Every machine made with the one flag (--listen 0.0.0.0), paired by its door."""
    first, *others = mesh.machines
    first.json("init", "--name", first.name, "--listen", "0.0.0.0", *first_args)
    for m in others:
        m.json("init", "--name", m.name, "--listen", "0.0.0.0")
    mesh.pair_up()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    reason = available()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    took: list[float] = []
    names = ["alpha", "bravo", "charlie"]
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp, NetLab(names) as lab:
        mesh = Mesh(Path(tmp), names)
        try:
            for m in mesh.machines:
                lab.place(m)
                m.env["BATON_LEASE_TTL_MS"] = "4000"
            listen_up(mesh, "--lease-store", f"git+file://{tmp}/lease.git")
            mesh.wait_all_reachable()
            where = {m.name: lab.address(m.name) for m in mesh.machines}
            for i in range(args.runs):
                m = mesh.machines[i % len(mesh.machines)]
                where[m.name], seconds = renumber(lab, mesh, m, where[m.name], 100 + i)
                took.append(seconds * 1000)
                if not args.json:
                    print(f"run {i + 1}: {m.name} -> {where[m.name]}: {seconds * 1000:.0f} ms")
        finally:
            mesh.stop()
    result = {"runs": len(took), "heard_again_ms": summary(took)}
    if args.json:
        print(json.dumps(result))
    else:
        s = result["heard_again_ms"]
        print(f"heard again  median {s['median']:>7} ms   p95 {s['p95']:>7} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
