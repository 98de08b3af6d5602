"""python -m tools.fuzz: every parser of outside bytes against mutated, nasty and random
inputs, bounded in inputs and time; a table of what each did and the crashes.

    python -m tools.fuzz                         # 100,000 inputs per parser (at most 600 s)
    python -m tools.fuzz --inputs 2000 --json    # the short run CI makes
    python -m tools.fuzz --target envelope --seed 3

A crash is an exception a parser raised that is not its clear refusal (see
tools/fuzz/targets.py), or a 5xx from an HTTP app. The first few inputs that crashed each
parser, per exception type, are written to --crashes (default: a temp directory, named
in the output). Exit 0 with no crash, 1 with any, 130 on Ctrl-C (the table so far).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.fuzz.inputs import inputs
from tools.fuzz.targets import Target, all_targets

KEEP_PER_KIND = 3


@dataclass
class Tally:
    target: str
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    crashes: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)


def fuzz(target: Target, n: int, seconds: float, seed: int, crashes: Path) -> Tally:
    tally = Tally(target.name)
    next_input = inputs(target.seeds, random.Random(f"{seed}:{target.name}"))
    began = time.monotonic()
    while tally.inputs < n and time.monotonic() - began < seconds:
        data = next_input()
        tally.inputs += 1
        try:
            target.parse(data)
            tally.accepted += 1
        except target.refusals:
            tally.refused += 1
        except Exception as exc:  # the finding: whatever a parser lets out untyped
            tally.crashes += 1
            kind = type(exc).__name__
            tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
            if tally.kinds[kind] <= KEEP_PER_KIND:
                stem = crashes / f"{target.name}-{kind}-{tally.kinds[kind]}"
                stem.with_suffix(".bin").write_bytes(data)
                stem.with_suffix(".txt").write_text(traceback.format_exc())
    tally.seconds = round(time.monotonic() - began, 2)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--inputs", type=int, default=100_000, help="per parser")
    parser.add_argument("--seconds", type=float, default=600.0, help="at most, per parser")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", action="append", help="only these (repeatable)")
    parser.add_argument("--crashes", type=Path, default=None, help="where crashing inputs go")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the parsers log their refusals: millions here
    with tempfile.TemporaryDirectory(prefix="baton-fuzz-") as work:
        crashes = args.crashes or Path(tempfile.mkdtemp(prefix="baton-fuzz-crashes-"))
        crashes.mkdir(parents=True, exist_ok=True)
        targets = [t for t in all_targets(Path(work)) if not args.target or t.name in args.target]
        tallies: list[Tally] = []
        try:
            for t in targets:
                if not args.json:
                    print(f"fuzzing {t.name}...", file=sys.stderr, flush=True)
                tallies.append(fuzz(t, args.inputs, args.seconds, args.seed, crashes))
        except KeyboardInterrupt:
            report(tallies, crashes, args.json)
            return 130
    return report(tallies, crashes, args.json)


def report(tallies: list[Tally], crashes: Path, as_json: bool) -> int:
    total = sum(t.crashes for t in tallies)
    if total == 0 and not any(crashes.iterdir()):
        crashes.rmdir()
    if as_json:
        doc = {"ok": total == 0, "crashes": total, "crash_dir": str(crashes) if total else None,
               "targets": [asdict(t) for t in tallies]}  # fmt: skip
        print(json.dumps(doc))
    else:
        print(f"{'parser':<14} {'inputs':>8} {'accepted':>9} {'refused':>8} {'crashes':>8} "
              f"{'seconds':>8}  crash kinds")  # fmt: skip
        for t in tallies:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.kinds.items()))
            print(f"{t.target:<14} {t.inputs:>8} {t.accepted:>9} {t.refused:>8} "
                  f"{t.crashes:>8} {t.seconds:>8}  {kinds}")  # fmt: skip
        if total:
            print(f"{total} crashes; inputs and tracebacks in {crashes}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
