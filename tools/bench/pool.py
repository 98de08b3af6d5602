"""Benchmark: the pool. Replies per second with the pool on over 3 machines against the
pool off, and the latency of a move under load.

Three real machines on loopback (real processes, CURVE over TCP) share a git lease store
(a bare repository on disk); the channel is the bundled chat service (fencing mode); the
agent is ``python:tools.bench.agents:work``, which waits ``--work-ms`` on each message,
as a model call would, and names the machine it ran on. Each machine has the default
agent workers (2).

Throughput, per run: the pool is turned off or on at the holder (runs alternate: off,
on, off, ...), then N messages are posted over 8 topics at once; elapsed is the time of
the last accepted reply minus the first post; replies/s = N / elapsed. With the pool off
the holder runs every agent; with it on, each topic's agent runs where it is placed.

Move latency, per move (pool on, a steady load of ``--rate`` messages a second over the
8 topics): a topic's current machine is read from the holder (GET /pool), another live
machine is picked, POST /pool/transfer asks the move (confirmed: a reply may be in
flight), and the move's latency is the time from the request to the chat service's
accepted send of the first reply that the new machine's agent made for that topic.

Every run checks that each message got exactly one accepted reply.

    python -m tools.bench.pool --runs 3 --messages 80 --work-ms 200 --moves 10 [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
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

TOPICS = [f"p{i}" for i in range(8)]
ON = re.compile(r" on (\w+) in (\S+)$")


def sends(chat: ChatServer) -> list[dict[str, Any]]:
    return [s for s in chat.api("/api/sends")["sends"] if s["outcome"] == "accepted"]


def post(chat: ChatServer, topic: str, text: str) -> tuple[int, float]:
    """Post as the user: the message id and when the post returned."""
    message_id = int(chat.api(f"/api/topics/{topic}/messages", {"text": text})["message_id"])
    return message_id, time.time()


def burst(chat: ChatServer, n: int, work_ms: int, run: int) -> tuple[float, set[int]]:
    """Post n messages over TOPICS: when the first went, and their ids."""
    started = time.time()
    ids = {post(chat, TOPICS[i % len(TOPICS)], f"work {work_ms} r{run}m{i}")[0] for i in range(n)}
    return started, ids


def answered(chat: ChatServer, ids: set[int], deadline_s: float) -> float:
    """When the last of ``ids`` was answered (each exactly once)."""

    def done() -> list[dict[str, Any]] | None:
        mine = [s for s in sends(chat) if s["reply_to"] in ids]
        return mine if {s["reply_to"] for s in mine} >= ids else None

    mine = wait_for(done, deadline_s, f"{len(ids)} replies", 0.05)
    if set(Counter(s["reply_to"] for s in mine).values()) != {1}:
        raise RuntimeError("a message got more than one accepted reply")
    return float(max(s["time"] for s in mine))


class Loader(threading.Thread):
    """Posts ``rate`` messages a second over TOPICS until stopped."""

    def __init__(self, chat: ChatServer, rate: float, work_ms: int) -> None:
        super().__init__(daemon=True)
        self.chat, self.gap, self.work_ms = chat, 1.0 / rate, work_ms
        self.stop = threading.Event()
        self.posted: set[int] = set()

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.gap):
            topic = TOPICS[n % len(TOPICS)]
            self.posted.add(post(self.chat, topic, f"work {self.work_ms} load{n}")[0])
            n += 1


def one_move(holder: Machine, chat: ChatServer, i: int) -> float:
    """Move one topic; ms from the request to the new machine's first reply in it."""
    client = NodeClient(holder.home)
    pool = client.get("/pool")
    alive = [m["nickname"] for m in pool["machines"] if m["alive"]]
    placed = [t for t in pool["topics"] if t["nickname"] in alive]
    topic = placed[i % len(placed)]
    target = next(n for n in alive[i % len(alive) :] + alive if n != topic["nickname"])
    asked = time.time()
    client.post("/pool/transfer", {"topic": topic["topic"], "to": target, "confirm": True})

    def first() -> float | None:
        texts = {}
        for t in TOPICS:
            for m in chat.api(f"/api/topics/{t}/messages")["messages"]:
                if m["from"] == "bot":
                    texts[m["message_id"]] = m["text"]
        for s in sends(chat):
            found = ON.search(texts.get(s["message_id"], ""))
            if s["time"] >= asked and found and found.groups() == (target, topic["topic"]):
                return float(s["time"])
        return None

    return (wait_for(first, 60, f"a reply of {topic['topic']} from {target}", 0.05) - asked) * 1000


def holder_of(mesh: Mesh) -> Machine:
    return wait_for(
        lambda: next((m for m in mesh.machines if m.status()["role"] == "awake"), None),
        60,
        "an awake machine",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="throughput runs of each mode")
    parser.add_argument("--messages", type=int, default=80)
    parser.add_argument("--work-ms", type=int, default=200, help="the agent's wait a message")
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--rate", type=float, default=8.0, help="messages/s during the moves")
    parser.add_argument("--ttl-ms", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    moves: list[float] = []
    with tempfile.TemporaryDirectory(prefix="baton-bench-pool-") as tmp:
        root = Path(tmp)
        chat = ChatServer(root / "chat.sqlite")
        chat.start()
        mesh = Mesh(root, NAMES)
        loader = Loader(chat, args.rate, args.work_ms)
        try:
            pair_up(mesh, root, chat, args.ttl_ms, "python:tools.bench.agents:work")
            for run in range(2 * args.runs):
                mode = ("off", "on")[run % 2]
                holder = holder_of(mesh)
                holder.json("pool", "enable" if mode == "on" else "disable")
                started, ids = burst(chat, args.messages, args.work_ms, run)
                last = answered(chat, ids, 300)
                rates[mode].append(args.messages / (last - started))
                if not args.json:
                    print(f"run {run + 1} (pool {mode}): {rates[mode][-1]:.1f} replies/s")
            holder = holder_of(mesh)
            holder.json("pool", "enable")
            loader.start()
            wait_for(lambda: len(sends(chat)) >= 2 * args.runs * args.messages + 16, 60, "load")
            for i in range(args.moves):
                moves.append(one_move(holder, chat, i))
                if not args.json:
                    print(f"move {i + 1}: {moves[-1]:.0f} ms")
                time.sleep(10.5 / 3)  # the rate limit: 3 moves of a topic, then one in 10 s
            loader.stop.set()
            loader.join(10)
            answered(chat, loader.posted, 120)
        finally:
            loader.stop.set()
            mesh.stop()
            chat.stop()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    result = {
        "runs": args.runs,
        "messages": args.messages,
        "work_ms": args.work_ms,
        "replies_per_s": {"off": round(off, 1), "on": round(on, 1), "on/off": round(on / off, 2)},
        "move_ms": summary(moves),
        "moves": len(moves),
        "rate": args.rate,
    }
    if args.json:
        print(json.dumps(result))
    else:
        r = result["replies_per_s"]
        print(f"replies/s (median of {args.runs}): pool off {r['off']}, on {r['on']}, "
              f"on/off {r['on/off']} (agent work {args.work_ms} ms a message)")  # fmt: skip
        s = result["move_ms"]
        print(f"move: request -> first reply from the new machine, median {s['median']} ms, "
              f"p95 {s['p95']} ms over {len(moves)} moves at {args.rate}/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
