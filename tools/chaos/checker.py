"""The chaos checker's command: judges a campaign's history and the chat service's send
log with baton.demo.verdict (see there for the history's format and the violations).

    python -m tools.chaos.checker HISTORY SENDS [--replies-per-message N] [--json]

Exits 1 when the run broke a promise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from baton.demo.verdict import check, read_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("history", type=Path, help="the campaign's history (JSON lines)")
    parser.add_argument("sends", type=Path, help="the chat service's /api/sends (JSON)")
    parser.add_argument("--replies-per-message", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    raw = json.loads(args.sends.read_text(encoding="utf-8"))
    sends = raw["sends"] if isinstance(raw, dict) else raw
    report = check(read_lines(args.history), sends, args.replies_per_message)
    summary = report.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for key in ("posted", "accepted", "lost", "duplicated", "stale_accepted"):
            print(f"{key:<17} {summary[key]}")
        for key in ("epochs_backwards", "overlapping"):
            print(f"{key:<17} {summary[key]}")
        print("OK" if report.ok else "VIOLATIONS: " + json.dumps(summary["examples"]))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
