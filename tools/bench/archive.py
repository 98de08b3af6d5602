"""Benchmark: the transcript archive's cost, on real files and a real SQLite transcript
store (baton.actors.tail_archive).

- ``write``: the holder's work after each turn (its part read, encoded, compared and
  replaced, with its fsyncs), ``--turns`` turns of ``--chars`` characters into one topic,
  so parts from 1 to 100 turns full are measured alike. It runs on the LiveTailActor's
  thread, so it is what an agent start may wait behind.
- ``take_in``: a standby taking the archive into its transcripts, per turn (each a
  durable SQLite put), in steps of the actor's budget.
- ``look``: a standby's step when nothing changed (every topic's files looked at), for
  ``--topics`` topics: the once-a-second cost of keeping watch.

Medians and p95 in ms. ``--load N`` runs N busy processes beside it.

    python -m tools.bench.archive [--turns 300] [--chars 1000] [--topics 50] [--load 0] [--json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from baton.actors.tail_archive import ArchiveIn, ArchiveOut
from baton.adapters.metrics import Counters
from baton.core.live_tail import DEFAULT_REDACTIONS, compile_redactions
from baton.stores.tail_memory import MemoryLiveTailBuffer
from baton.stores.transcript_archive import FileTranscriptArchive
from baton.stores.transcript_sqlite import SqliteTranscriptStore
from tools.bench.timing import busy, report, summary


def measure(root: Path, turns: int, chars: int, topics: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"write": [], "take_in": [], "look": []}
    holder = SqliteTranscriptStore(root / "holder.sqlite")
    standby = SqliteTranscriptStore(root / "standby.sqlite")
    try:
        archive = FileTranscriptArchive(root / "state")
        out = ArchiveOut(archive, compile_redactions(DEFAULT_REDACTIONS), Counters())
        text = ("word " * (chars // 5 + 1))[:chars]
        for i in range(1, turns + 1):
            turn = holder.append("-100/1", f"c:-100/1:{i}", i, text, replies=(text,), at_ms=i)
            t0 = time.perf_counter()
            out.changed(turn.topic, turn.seq)
            out.step(holder, 0)
            times["write"].append((time.perf_counter() - t0) * 1000)
        for t in range(1, topics):  # more topics to watch, a turn each
            topic = f"-100/{t + 1}"
            holder.append(topic, f"c:{topic}:1", 1, text, replies=(), at_ms=1)
            out.changed(topic, 1)
        while out.pending:
            out.step(holder, 0)
        into = ArchiveIn(archive, Counters())
        while True:
            t0 = time.perf_counter()
            done = into.step(standby, MemoryLiveTailBuffer(), 0)
            if done.turns:
                times["take_in"].append((time.perf_counter() - t0) * 1000 / done.turns)
            if not into.more:
                break
        for _ in range(20):
            t0 = time.perf_counter()
            if into.step(standby, MemoryLiveTailBuffer(), 0).turns:
                raise RuntimeError("nothing changed, yet turns were taken")
            times["look"].append((time.perf_counter() - t0) * 1000)
        if standby.last_seqs() != holder.last_seqs():
            raise RuntimeError("the standby did not take the whole archive")
    finally:
        holder.close()
        standby.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--load", type=int, default=0, help="busy processes beside it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with busy(args.load), tempfile.TemporaryDirectory(prefix="baton-bench-") as root:
        times = measure(Path(root), args.turns, args.chars, args.topics)
    result = {
        "turns": args.turns,
        "chars": args.chars,
        "topics": args.topics,
        "load": args.load,
        **summary(times),
    }
    report(result, "transcript archive (ms; take_in: per turn):", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
