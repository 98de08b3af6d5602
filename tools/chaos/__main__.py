"""python -m tools.chaos: a chaos campaign from a seed (see tools/chaos/campaign.py).

    python -m tools.chaos --seed 7                     # 12 faults, one every ~4 s
    python -m tools.chaos --seed 7 --faults 40         # a long one
    python -m tools.chaos --seed 7 --schedule-only     # print the schedule, run nothing

Exit 0 when the checker found nothing; 1 on any violation (the run's directory is kept
and named); 2 when the campaign itself could not finish (kept too); 130 on Ctrl-C,
SIGTERM or SIGHUP (everything started is stopped first).
"""

from __future__ import annotations

import argparse
import json
import sys

from baton.demo.kit import interrupted_by_signals
from tools.chaos.campaign import Campaign
from tools.chaos.schedule import schedule


def _at_least(low: int, text: str) -> int:
    value = int(text)
    if value < low:
        raise argparse.ArgumentTypeError(f"at least {low}, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--faults", type=int, default=12, help="how many faults (default 12)")
    parser.add_argument("--every", type=float, default=4.0, help="seconds between faults")
    parser.add_argument("--ttl-ms", type=int, default=3000, help="the machines' lease ttl")
    parser.add_argument("--rate", type=float, default=15.0, help="messages a second")
    parser.add_argument(
        "--sink",
        choices=("telegram", "fencing"),
        default="telegram",
        help="the chat service's mode: telegram forgives nothing (default), fencing refuses "
        "stale epochs and repeated reply keys",
    )
    parser.add_argument(
        "--max-unanswered",
        type=lambda text: _at_least(0, text),
        default=40,
        help="the load waits while this many messages are unanswered, as a person waits "
        "for replies (default 40; 0: it never waits, and a host too busy to keep up "
        "builds a backlog no answer window covers)",
    )
    parser.add_argument(
        "--pool", action="store_true", help="the pool on, and a move before each fault"
    )
    parser.add_argument("--schedule-only", action="store_true", help="print it; run nothing")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = parser.parse_args(argv)
    faults = schedule(a.seed, a.faults, a.every, a.ttl_ms / 1000)
    if a.schedule_only:
        for f in faults:
            print(json.dumps(f.to_dict()))
        return 0
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if a.json else print
    try:
        with interrupted_by_signals():
            summary = Campaign(
                a.seed,
                faults,
                a.ttl_ms,
                a.rate,
                say,
                sink=a.sink,
                max_unanswered=a.max_unanswered or None,
                pool=a.pool,
            ).main()
    except KeyboardInterrupt:
        print("interrupted; everything the campaign started is stopped", file=sys.stderr)
        return 130
    if a.json:
        print(json.dumps(summary))
    elif "error" in summary:
        print(f"the campaign could not finish (kept {summary['dir']}): {summary['error']}")
        return 2
    else:
        for key in (
            "posted",
            "accepted",
            "lost",
            "duplicated",
            "stale_accepted",
            "epochs_backwards",
            "overlapping",
            "stale_refused",
            "load_held_s",
            "latency_s",
        ):
            print(f"{key:<17} {summary[key]}")
        print(
            "OK"
            if summary["ok"]
            else f"VIOLATIONS (kept {summary['dir']}): " + json.dumps(summary["examples"])
        )
    return 0 if summary["ok"] else 2 if "error" in summary else 1


if __name__ == "__main__":
    sys.exit(main())
