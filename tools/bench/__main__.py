"""The benchmark suite: failover, handoff, throughput and reply latency, head-of-line
blocking, live-tail lag, agent-state sync, the transcript archive, pool placement, the
pool's throughput and moves, a rolling update's parts and the CLI's start in one
command, one table of medians, p95 and ratios (``--json``: one object).

Each benchmark runs as its own process (``python -m tools.bench.<name> ... --json``), one
after another, so none disturbs another; ``--quick`` runs fewer rounds of each (a smoke
run, not a measurement).

    python -m tools.bench [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

FULL = {
    "failover": ["--runs", "5", "--ttl-ms", "3000"],
    "handoff": ["--runs", "10"],
    "throughput": ["--runs", "5", "--messages", "300"],
    "head_of_line": ["--stall-s", "20"],
    "tail": ["--seconds", "10"],
    "state_sync": ["--changes", "30", "--batch", "50"],
    "archive": ["--turns", "300", "--topics", "50"],
    "placement": ["--runs", "5"],
    "pool": ["--runs", "3", "--messages", "80", "--moves", "10"],
    "upgrade": ["--runs", "5"],
    "cli": ["--runs", "15"],
}
QUICK = {
    "failover": ["--runs", "2", "--ttl-ms", "3000"],
    "handoff": ["--runs", "3"],
    "throughput": ["--runs", "1", "--messages", "100"],
    "head_of_line": ["--stall-s", "3"],
    "tail": ["--seconds", "3"],
    "state_sync": ["--changes", "5", "--batch", "10"],
    "archive": ["--turns", "30", "--topics", "5"],
    "placement": ["--runs", "1", "--topics", "1000"],
    "pool": ["--runs", "1", "--messages", "24", "--moves", "2"],
    "upgrade": ["--runs", "1"],
    "cli": ["--runs", "3"],
}


def run(name: str, args: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", f"tools.bench.{name}", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def _timed(bench: str, what: str, stats: dict[str, Any]) -> tuple[str, str, str, str]:
    return (bench, what, f"{stats['median']} ms", f"p95 {stats['p95']} ms")


TIMED = {  # benchmark -> (key of its result, what the row says)
    "failover": (("takeover_ms", "kill -9 to new holder"), ("lateness_ms", "beyond the lease")),
    "handoff": (
        ("acquired_ms", "wakeup to new holder"),
        ("first_reply_ms", "wakeup to first reply"),
    ),
}


def rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(benchmark, what, median, p95 or ratio) for the table."""
    out: list[tuple[str, str, str, str]] = []
    for bench, keys in TIMED.items():
        if bench in results:
            out += [_timed(bench, what, results[bench][key]) for key, what in keys]
    t = results.get("throughput")
    if t:
        on, ratio = f"{t['on']['median_rps']}", f"ratio off/on {t['ratio']}"
        out.append(("throughput", "replies/s, guarantees on", on, ratio))
        out.append(("throughput", "replies/s, guarantees off", f"{t['off']['median_rps']}", ""))
        for mode in ("on", "off"):
            lat = t[mode].get("latency")
            if lat:
                p50, p95 = f"{lat['p50_ms']} ms", f"p95 {lat['p95_ms']} ms"
                out.append(("throughput", f"reply latency, guarantees {mode}", p50, p95))
    h = results.get("head_of_line")
    if h:
        for variant in ("baseline", "stalled", "before"):
            o = h[variant]["others"]
            what = f"other topics' latency, {variant}"
            out.append(("head_of_line", what, f"{o['p50_ms']} ms", f"p95 {o['p95_ms']} ms"))
    for r in results.get("tail", {}).get("results", []):
        out.append(_timed("tail", f"tail lag, flush {r['flush_ms']} ms", r["lag_ms"]))
    s = results.get("state_sync")
    if s:
        for key, what in (
            ("change", "state change to verified checkout"),
            ("verify", "verification per commit"),
        ):
            out.append(_ms("state_sync", what, s, key))
    a = results.get("archive")
    if a:
        out.append(_ms("archive", "holder's archive write per turn", a, "write"))
        out.append(_ms("archive", "standby's take-in per turn", a, "take_in"))
        out.append(_ms("archive", f"standby's look, {a['topics']} topics", a, "look"))
    p = results.get("placement")
    if p:
        size = f"{p['machines']} machines, {p['topics']} topics"
        for key, what in (("fresh", "new"), ("steady", "sticky"), ("failover", "after a death")):
            out.append(("placement", f"decisions/s, {what}, {size}", str(p[f"{key}_per_s"]), ""))
    o = results.get("pool")
    if o:
        r = o["replies_per_s"]
        what = f"replies/s, pool on over 3 machines, agent {o['work_ms']} ms"
        out.append(("pool", what, str(r["on"]), f"on/off {r['on/off']}"))
        out.append(("pool", "replies/s, pool off", str(r["off"]), ""))
        out.append(_timed("pool", "move to the first reply from the new machine", o["move_ms"]))
    u = results.get("upgrade")
    if u:
        out.append(_ms("upgrade", "flag change to every member", u, "flag"))
        out.append(_ms("upgrade", "restart of a standby, judged", u, "restart"))
        out.append(_ms("upgrade", "restart of the holder, the role moved", u, "holder_restart"))
    c = results.get("cli")
    if c:
        for key, what in (
            ("help", "baton --help"),
            ("whoami", "baton whoami, node running"),
            ("status", "baton status, node running"),
            ("whoami_stopped", "baton whoami, node stopped"),
        ):
            median, p95 = c[f"{key}_ms_median"], c[f"{key}_ms_p95"]
            ratio = f"p95 {p95} ms, {c[f'{key}_over_python']}x python"
            out.append(("cli", f"{what}: start to exit", f"{median} ms", ratio))
    return out


def _ms(bench: str, what: str, result: dict[str, Any], key: str) -> tuple[str, str, str, str]:
    median, p95 = result[f"{key}_ms_median"], result[f"{key}_ms_p95"]
    return (bench, what, f"{median} ms", f"p95 {p95} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument("--only", nargs="+", choices=sorted(FULL), help="run just these")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    results: dict[str, dict[str, Any]] = {}
    for name in args.only or list(plan):
        if not args.json:
            print(f"running {name} ...", flush=True)
        results[name] = run(name, plan[name])
    if args.json:
        print(json.dumps(results))
        return 0
    table = [("benchmark", "measure", "median", "p95 / ratio"), *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    print()
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
