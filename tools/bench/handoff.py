"""Benchmark: a planned handoff (`baton wakeup`) under a steady load.

Three real machines on loopback (real processes, CURVE over TCP) share a git lease store
(a bare repository on disk); the channel is the bundled chat service; the agent is echo.
A loader posts messages over 5 topics at a steady rate the whole time. Each run picks a
standby, asks it to wake up (POST /api/wakeup, as `baton wakeup` does) and measures, in
wall-clock time on this one host:

    acquired     wakeup asked -> the target holds the new epoch (its answer's took_ms)
    first_reply  wakeup asked -> the chat service accepts the target's first reply
                 (the first accepted send stamped with the new epoch)

Every run also checks that each message so far has exactly one accepted reply. For
scale: etcd moves leadership in about 4 ms when a leader resigns (nothing to catch up);
the reference implementation we learn from waits up to 5 s for the ack alone.

    python -m tools.bench.handoff --runs 10 [--rate 20] [--ttl-ms 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh, wait_for
from baton.node.client import NodeClient
from tools.bench.failover import summary
from tools.bench.meshes import NAMES, pair_up

TOPICS = [f"t{i}" for i in range(5)]


class Loader(threading.Thread):
    """Posts ``rate`` messages a second over TOPICS until stopped."""

    def __init__(self, chat: ChatServer, rate: float) -> None:
        super().__init__(daemon=True)
        self.chat, self.gap = chat, 1.0 / rate
        self.stop = threading.Event()
        self.posted: set[int] = set()

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.gap):
            body = {"text": f"m{n}", "client_id": f"load-{n:08d}"}
            topic = TOPICS[n % len(TOPICS)]
            self.posted.add(int(self.chat.api(f"/api/topics/{topic}/messages", body)["message_id"]))
            n += 1


def accepted(chat: ChatServer) -> list[dict[str, Any]]:
    return [s for s in chat.api("/api/sends")["sends"] if s["outcome"] == "accepted"]


def one_run(target: Machine, chat: ChatServer) -> dict[str, float]:
    asked = time.time()
    out = NodeClient(target.home, timeout=120).post("/api/wakeup", {"force": False})
    if out["outcome"] != "handed_over":
        raise RuntimeError(f"wakeup on {target.name}: {out}")
    epoch = out["epoch"]
    first = wait_for(
        lambda: min((s["time"] for s in accepted(chat) if s["epoch"] == epoch), default=None),
        60,
        f"a reply from {target.name} at epoch {epoch}",
        0.02,
    )
    return {"acquired_ms": float(out["took_ms"]), "first_reply_ms": (first - asked) * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--ttl-ms", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        root = Path(tmp)
        chat = ChatServer(root / "chat.sqlite")
        chat.start()
        mesh = Mesh(root, NAMES)
        loader = Loader(chat, args.rate)
        try:
            pair_up(mesh, root, chat, args.ttl_ms)
            loader.start()
            time.sleep(2)  # a steady state first
            for i in range(args.runs):
                awake = next(m for m in mesh.machines if m.status()["role"] == "awake")
                target = mesh.machines[(mesh.machines.index(awake) + 1 + i % 2) % 3]
                run = one_run(target, chat)
                runs.append(run)
                if not args.json:
                    print(f"run {i + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in run.items()))
                time.sleep(1)
            loader.stop.set()
            loader.join(10)
            wait_for(
                lambda: {s["reply_to"] for s in accepted(chat)} >= loader.posted,
                60,
                "every message answered",
            )
            per = Counter(s["reply_to"] for s in accepted(chat))
            if set(per.values()) != {1}:
                raise RuntimeError("a message got more than one accepted reply")
        finally:
            loader.stop.set()
            mesh.stop()
            chat.stop()
    result = {
        "runs": len(runs),
        "rate": args.rate,
        "ttl_ms": args.ttl_ms,
        "messages": len(loader.posted),
        **{key: summary([r[key] for r in runs]) for key in runs[0]},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{len(loader.posted)} messages at {args.rate}/s, each answered exactly once")
        for key in ("acquired_ms", "first_reply_ms"):
            s = result[key]
            print(f"{key:<15} median {s['median']:>7} ms   p95 {s['p95']:>7} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
