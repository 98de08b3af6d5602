"""Benchmark: what a rolling update costs (issue 21), under a steady load.

Three real machines on loopback share a git lease store; the channel is the bundled
chat service at Telegram's terms (it forgives nothing); the agent is echo. A loader
posts messages over 5 topics the whole time. Measured, in wall-clock time on this host:

    flag        `baton features disable|enable state_sync` on the holder -> every
                member's status shows it (the signed flags sent, judged, kept)
    restart     `baton restart` on a standby -> the node back, judged (the
                UpdateRestartHandshake: a clean stop, the supervisor's start, the check)
    holder_restart  `baton restart` on the holder -> the node back; the role moves to a
                standby meanwhile (a clean release)

Then every message so far must have exactly one accepted reply (reported ambiguous sends
of a release aside: none are expected, a release is clean).

    python -m tools.bench.upgrade --runs 5 [--rate 10] [--ttl-ms 3000] [--json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh, wait_for
from tools.bench.handoff import Loader, accepted
from tools.bench.meshes import NAMES, pair_up
from tools.bench.timing import report, summary


def flag_round(holder: Machine, mesh: Mesh, on: bool) -> float:
    started = time.monotonic()
    holder.json("features", "enable" if on else "disable", "state_sync")
    for m in mesh.machines:
        wait_for(
            lambda m=m: m.status()["features"]["state_sync"] is on,  # type: ignore[misc]
            60,
            f"{m.name} to take the flag",
            0.02,
        )
    return (time.monotonic() - started) * 1000


def restart_round(m: Machine) -> float:
    said = m.json("restart", timeout=180)
    if not said["ok"] or said["outcome"] != "restarted":
        raise RuntimeError(f"restart on {m.name}: {said}")
    return float(said["took_ms"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument("--ttl-ms", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"flag": [], "restart": [], "holder_restart": []}
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        root = Path(tmp)
        chat = ChatServer(root / "chat.sqlite", mode="telegram")
        chat.start()
        mesh = Mesh(root, NAMES)
        loader = Loader(chat, args.rate)
        try:
            pair_up(mesh, root, chat, args.ttl_ms)
            wait_for(mesh.synced_holder, 90, "a holder with every standby in sync", 0.5)
            loader.start()
            for i in range(args.runs):
                holder = next(m for m in mesh.machines if m.status()["role"] == "awake")
                times["flag"].append(flag_round(holder, mesh, False))
                times["flag"].append(flag_round(holder, mesh, True))
                standby = next(m for m in mesh.machines if m is not holder)
                times["restart"].append(restart_round(standby))
                wait_for(mesh.synced_holder, 90, "the standby in sync again", 0.5)
                times["holder_restart"].append(restart_round(holder))
                wait_for(mesh.synced_holder, 90, "a holder in sync again", 0.5)
                if not args.json:
                    print(
                        f"run {i + 1}: "
                        + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in times.items())
                    )
            loader.stop.set()
            loader.join(10)
            wait_for(
                lambda: {s["reply_to"] for s in accepted(chat)} >= loader.posted,
                120,
                "every message answered",
            )
            per = Counter(s["reply_to"] for s in accepted(chat))
            doubled = sorted(k for k, n in per.items() if n > 1)
        finally:
            loader.stop.set()
            mesh.stop()
            chat.stop()
    result: dict[str, Any] = {
        "runs": args.runs,
        "rate": args.rate,
        "ttl_ms": args.ttl_ms,
        "messages": len(loader.posted),
        "doubled": len(doubled),
        **summary(times),
    }
    report(result, "a rolling update's parts under load (3 machines, telegram sink)", args.json)
    return 0 if not doubled else 1


if __name__ == "__main__":
    raise SystemExit(main())
