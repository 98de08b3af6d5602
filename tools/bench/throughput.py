"""Benchmark: replies per second and reply latency end to end, with the delivery
guarantees on and off.

One process builds the delivery pipeline the node builds (tools/bench/pipeline.py: the
real bundled chat service over HTTP, a fresh SQLite file per run, the real Bot API
adapter, the echo agent in real worker processes, a DeliveryActor with its
DeliveryJobs, FencedOutbox, LeaseGate, Cursor, ChannelPoller and a Ticker at the node's
tick). Two modes (see pipeline.py: "on" is durable ledgers, fencing and an in-sync
standby that must record each reply's prepared marker before the reply goes; "off" is
none of that), alternated run by run (on, off, on, off, ...) so that drift hits both
alike.

Per run, throughput: N user messages over 5 topics are posted to the chat service first
(its HTTP API); then the timer starts, the holder's gate opens (its actor is told at
once, not at the next tick) and its poller starts (so no idle wait of the poller is
timed). The burst ends when the chat service's send log holds an accepted bot reply for
every message (polled over HTTP every 20 ms, with a deadline); elapsed is the time of
the last accepted send in that log minus the moment the gate opened, replies/s =
N / elapsed. Then latency: P more messages are posted at R a second (below what either
mode answers) while the holder runs, each timed from its post's return to its reply's
accepted send in the service's log; p50 and p95 are over every run's messages of a
mode. Every run also checks that each message got exactly one accepted reply, that
sends carried the epoch and reply key exactly when fencing was on, and (on) that the
standby persisted a reply-committed marker for every burst message.

The ledgers' fsyncs land in the temporary directory's filesystem, which the report
names.

    python -m tools.bench.throughput --runs 5 --messages 300 [--paced 100 --rate 40] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import wait_for
from tools.bench.pipeline import (
    AGENT_WORKERS,
    CHECK_EVERY_S,
    TOPICS,
    Machine,
    Rig,
    answered_all,
    latencies_ms,
    latency_line,
    latency_summary,
    machine_info,
    paced,
    percentile,
    post_messages,
)

MODES = {
    "on": "SQLite ledger and transcripts, fencing, markers and live tail to a standby",
    "off": "memory ledger and transcripts, no fencing, no markers, no live tail",
}


def one_run(
    mode: str, n: int, run: int, *, deadline_s: float, paced_n: int, rate: float
) -> dict[str, Any]:
    """One run of ``mode`` ("on" or "off"): the burst, then the paced messages."""
    tmp = Path(tempfile.mkdtemp(prefix=f"baton-bench-{mode}-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        rig = Rig(stack, tmp, mode, "echo")
        chat = rig.chat
        ids = post_messages(chat, n, run)
        started_wall = time.time()
        rig.holder.hold()
        sends = wait_for(
            lambda: answered_all(chat, ids),
            deadline_s,
            f"{mode} run {run + 1}: all {n} messages answered",
            CHECK_EVERY_S,
        )
        elapsed = max(s["time"] for s in sends) - started_wall
        result = {
            "rps": round(n / elapsed, 1),
            "elapsed_s": round(elapsed, 3),
            **check(mode, n, ids, rig.machines, chat),
        }
        if paced_n:
            posted = paced(chat, paced_n, rate, f"paced-{mode}-{run}", TOPICS)
            result["latency_ms"] = latencies_ms(chat, posted, deadline_s)
    return result


def check(
    mode: str, n: int, ids: set[int], machines: list[Machine], chat: ChatServer
) -> dict[str, Any]:
    """After the timer: exactly once, fencing as the mode says, markers at the standby."""
    if machines[0].fenced:
        raise RuntimeError(f"{mode}: the holder was fenced: {machines[0].fenced}")
    sends = [s for s in chat.api("/api/sends")["sends"] if s["reply_to"] in ids]
    per_message = Counter(s["reply_to"] for s in sends if s["outcome"] == "accepted")
    if set(per_message.values()) != {1}:
        raise RuntimeError(f"{mode}: a message got more than one accepted reply")
    fenced = [s["epoch"] is not None and s["reply_key"] is not None for s in sends]
    if any(fenced) != (mode == "on") or all(fenced) != (mode == "on"):
        raise RuntimeError(f"{mode}: sends carried the epoch and reply key in the wrong mode")
    markers = 0
    if mode == "on":
        standby = machines[1]

        def stored() -> int:
            counts = standby.ledger.counts()  # a standby acks what its markers complete
            return int(counts["reply-committed"] + counts["acked"])

        wait_for(lambda: stored() >= n, 30, f"the standby to hold all {n} committed markers")
        markers = stored()
    return {"sends": len(sends), "standby_markers": markers, "fenced": all(fenced)}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["rps"] for r in runs]
    elapsed = [r["elapsed_s"] for r in runs]
    latency = [v for r in runs for v in r.pop("latency_ms", [])]
    return {
        "runs": runs,
        "latency": latency_summary(latency) if latency else None,
        "median_rps": round(statistics.median(rps), 1),
        "min_rps": min(rps),
        "max_rps": max(rps),
        "median_elapsed_s": round(statistics.median(elapsed), 3),
        "p95_elapsed_s": round(percentile(elapsed, 0.95), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per mode")
    parser.add_argument("--messages", type=int, default=300, help="messages per run")
    parser.add_argument("--deadline-s", type=float, default=120.0, help="per run")
    parser.add_argument("--paced", type=int, default=100, help="latency: messages per run")
    parser.add_argument("--rate", type=float, default=40.0, help="latency: messages/s")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.messages < 1 or args.paced < 0 or args.rate <= 0:
        parser.error("--runs and --messages must be at least 1, --paced 0 or more, --rate > 0")
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for i in range(args.runs):
        for mode in ("on", "off"):
            run = one_run(
                mode,
                args.messages,
                i,
                deadline_s=args.deadline_s,
                paced_n=args.paced,
                rate=args.rate,
            )
            runs[mode].append(run)
            if not args.json:
                print(
                    f"run {i + 1} {mode:<3} {run['rps']:>8.1f} replies/s "
                    f"({args.messages} in {run['elapsed_s']:.2f} s)",
                    flush=True,
                )
    on, off = summary(runs["on"]), summary(runs["off"])
    result = {
        "parameters": {
            "runs": args.runs,
            "messages": args.messages,
            "paced": args.paced,
            "rate": args.rate,
            "topics": len(TOPICS),
            "agent": "echo",
            "agent_workers": AGENT_WORKERS,
        },
        "machine": machine_info(),
        "on": on,
        "off": off,
        "ratio": round(off["median_rps"] / on["median_rps"], 2),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    info = result["machine"]
    print()
    print(
        f"end-to-end replies/s: echo agent ({AGENT_WORKERS} workers), {args.messages} "
        f"messages over {len(TOPICS)} topics, {args.runs} runs per mode"
    )
    print(f"machine: {info['cores']} cores ({info['usable_cores']} usable), {info['platform']}")
    print(f"ledgers and chat database in {info['temp_dir']}: {info['temp_fs']}")
    print()
    width = max(len(d) for d in MODES.values())
    header = f"{'mode':<4} {'guarantees':<{width}} {'median r/s':>10} {'min':>7} {'max':>7}"
    print(header + f" {'median s':>9} {'p95 s':>7}")
    for mode, s in (("on", on), ("off", off)):
        print(
            f"{mode:<4} {MODES[mode]:<{width}} {s['median_rps']:>10.1f} {s['min_rps']:>7.1f} "
            f"{s['max_rps']:>7.1f} {s['median_elapsed_s']:>9.2f} {s['p95_elapsed_s']:>7.2f}"
        )
    cost = 100 * (1 - on["median_rps"] / off["median_rps"])
    print()
    print(f"ratio off/on: {result['ratio']:.2f} (the guarantees cost {cost:.0f}% of throughput)")
    if on["latency"] and off["latency"]:
        print()
        print(f"reply latency, {args.paced} messages a run at {args.rate:g}/s (post to reply):")
        for mode, s in (("on", on), ("off", off)):
            print(f"{mode:<4} {latency_line(s['latency'])}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # everything started was stopped on the way out
        raise SystemExit(130) from None
