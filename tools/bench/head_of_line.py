"""Benchmark: does one slow topic hold up the others? (issue 15, "no head-of-line
blocking")

The pipeline of tools/bench/pipeline.py with the guarantees on (durable ledgers,
fencing, an in-sync standby that acks every marker) and an agent that takes STALL
seconds over one message in topic t0 and answers every other message at once. Per
variant, a fresh pipeline: the stalled message is posted, then other messages at RATE a
second over topics t1..t4 for as long as the stall lasts, each timed from its post to
its reply's accepted send. Variants, in one process and one run:

    baseline  no stalled message: the others' latency on their own
    stalled   the stall, as built: a message unanswered after 1 s is told to the
              standby as received, and the channel cursor passes it once the standby
              has it, so the others keep coming (limit 100 updates a poll)
    before    the stall with that turned off (the cursor stays at the stalled
              message, as before issue 15): every poll starts there

    python -m tools.bench.head_of_line [--stall-s 20] [--rate 10] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from baton.core import delivery
from tools.bench.pipeline import (
    Rig,
    latencies_ms,
    latency_line,
    latency_summary,
    machine_info,
    paced,
)

AGENT = "python:tools.bench.agents:stall"
OTHERS = ["t1", "t2", "t3", "t4"]
VARIANTS = ("baseline", "stalled", "before")


def one_variant(variant: str, stall_s: float, rate: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"baton-bench-hol-{variant}-"))
    secure_after = delivery.SECURE_AFTER_MS
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        if variant == "before":
            delivery.SECURE_AFTER_MS = float("inf")  # read at each call: the old rule
            stack.callback(setattr, delivery, "SECURE_AFTER_MS", secure_after)
        rig = Rig(stack, tmp, "on", AGENT)
        chat = rig.chat
        rig.holder.hold()
        stalled: dict[int, float] = {}
        if variant != "baseline":
            body = {"text": f"stall {stall_s:g}", "client_id": f"hol-{variant}-stall"}
            stalled[int(chat.api("/api/topics/t0/messages", body)["message_id"])] = time.time()
        n = max(1, round(stall_s * rate))
        posted = paced(chat, n, rate, f"hol-{variant}", OTHERS)
        others = latencies_ms(chat, posted, stall_s + 120)
        result: dict[str, Any] = {"others": latency_summary(others), "messages": n}
        if stalled:
            [own] = latencies_ms(chat, stalled, stall_s + 120)
            result["stalled_ms"] = round(own, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stall-s", type=float, default=20.0, help="the slow agent run")
    parser.add_argument("--rate", type=float, default=10.0, help="other messages a second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.stall_s <= 600 or args.rate <= 0:
        parser.error("--stall-s must be in (0, 600] and --rate above 0")
    results = {}
    for variant in VARIANTS:
        if not args.json:
            print(f"running {variant} ...", flush=True)
        results[variant] = one_variant(variant, args.stall_s, args.rate)
    out = {
        "parameters": {"stall_s": args.stall_s, "rate": args.rate, "other_topics": len(OTHERS)},
        "machine": machine_info(),
        **results,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print()
    print(
        f"other topics' reply latency (post to accepted reply), {args.rate:g} messages/s "
        f"over {len(OTHERS)} topics while t0's agent run takes {args.stall_s:g} s:"
    )
    for variant in VARIANTS:
        r, o = results[variant], results[variant]["others"]
        own = f"  (the stalled one: {r['stalled_ms'] / 1000:.1f} s)" if "stalled_ms" in r else ""
        print(f"{variant:<9} {latency_line(o)}{own}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # everything started was stopped on the way out
        raise SystemExit(130) from None
