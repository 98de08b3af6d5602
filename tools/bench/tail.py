"""Benchmark: live-tail lag, from a turn on the holder to its persistence on a standby.

One process builds a holder and a standby as the node builds them (the machines of
tools.bench.throughput: the real bundled chat service over HTTP, the echo agent in real
worker processes, DeliveryActor and LiveTailActor over SQLite ledgers, transcripts and
tail buffers), with the live tail going from holder to standby over an in-memory router
(sealed, encoded, decoded, opened; no CURVE or TCP). A loader posts messages over 5
topics at a steady rate. For every turn:

    lag   the holder's transcript stores the turn -> the standby's buffer stores its
          frame (both on this process's monotonic clock)

reported as median and p95 per flush interval (``live_tail_flush_ms``): the flush
interval bounds a failover's transcript loss (DESIGN.md, RPO <= flush interval).

    python -m tools.bench.tail [--rate 20] [--seconds 10] [--flush-ms 1000 200] [--json]
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

from baton.actors.ticker import Ticker
from baton.adapters.system_clock import SystemClock
from baton.agents.runner import AgentRunner
from baton.channels.chat_server import ChatServer
from baton.core.live_tail import FrameResult, LiveTailBuffer, TailFrame
from baton.core.settings import Settings
from baton.core.transcript import TranscriptStore, TranscriptTurn
from baton.demo.devmesh import wait_for
from baton.node.root import TICK_MS
from baton.stores.ledger_sqlite import SqliteLedger
from baton.stores.tail_sqlite import SqliteLiveTailBuffer
from baton.stores.transcript_sqlite import SqliteTranscriptStore
from tools.bench.failover import summary
from tools.bench.pipeline import TOPICS, Machine, no_agent


class TimedTranscripts:
    """The holder's transcripts, noting when each turn was first stored."""

    def __init__(self, inner: TranscriptStore) -> None:
        self.inner = inner
        self.stored: dict[tuple[str, int], float] = {}

    def append(self, *args: Any, **kwargs: Any) -> TranscriptTurn:
        turn = self.inner.append(*args, **kwargs)
        self.stored.setdefault((turn.topic, turn.seq), time.monotonic())
        return turn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedBuffer:
    """The standby's buffer, noting when each frame was first stored."""

    def __init__(self, inner: LiveTailBuffer) -> None:
        self.inner = inner
        self.stored: dict[tuple[str, int], float] = {}

    def take(self, frame: TailFrame, head: int | None) -> FrameResult:
        result = self.inner.take(frame, head)
        if result in (FrameResult.ADDED, FrameResult.REPLACED):
            self.stored.setdefault((frame.topic, frame.seq), time.monotonic())
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def one_run(flush_ms: int, rate: float, seconds: float) -> dict[str, Any]:
    settings = Settings(agent="echo", live_tail_flush_ms=flush_ms)
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-tail-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        chat = ChatServer(tmp / "chat.sqlite")
        stack.callback(chat.stop)
        chat.start()
        runner = AgentRunner("echo", workers=2, timeout_s=30)
        stack.callback(runner.stop)
        runner.start()
        router: dict[str, Machine] = {}
        machines = []
        for name in ("holder", "standby"):
            ledger = SqliteLedger(tmp / f"{name}.sqlite")
            transcripts = TimedTranscripts(SqliteTranscriptStore(tmp / f"{name}-t.sqlite"))
            buffer = TimedBuffer(SqliteLiveTailBuffer(tmp / f"{name}-tail.sqlite"))
            for store in (ledger, transcripts, buffer):
                stack.callback(store.close)
            agent = runner.run if name == "holder" else no_agent
            m = Machine(
                name, chat, ledger, transcripts, buffer,
                fencing=True, run_agent=agent, router=router, settings=settings,
            )  # fmt: skip
            stack.callback(m.stop)
            m.start()
            router[m.id] = m
            machines.append((m, transcripts, buffer))
        (holder, held, _), (standby, _, mirrored) = machines
        holder.peers(standby)
        standby.peers(holder)
        ticker = Ticker(
            SystemClock(), [a for m, _, _ in machines for a in (m.actor, m.tail)], TICK_MS
        )
        stack.callback(ticker.stop)
        ticker.start()
        holder.hold()
        n = int(rate * seconds)
        started = time.monotonic()
        for i in range(n):  # a steady rate, paced from the start (no drift)
            topic = TOPICS[i % len(TOPICS)]
            chat.api(f"/api/topics/{topic}/messages", {"text": f"m{i}"})
            time.sleep(max(0.0, (i + 1) / rate - (time.monotonic() - started)))
        wait_for(lambda: len(held.stored) >= n, 60, "every turn on the holder")
        wait_for(lambda: set(mirrored.stored) >= set(held.stored), 60, "every turn mirrored")
        lags = [(mirrored.stored[k] - held.stored[k]) * 1000 for k in held.stored]
    return {"flush_ms": flush_ms, "turns": len(lags), "lag_ms": summary(lags)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flush-ms", type=int, nargs="+", default=[1000, 200])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [one_run(flush, args.rate, args.seconds) for flush in args.flush_ms]
    if args.json:
        print(json.dumps({"rate": args.rate, "seconds": args.seconds, "results": results}))
        return 0
    print(f"{args.rate:g} messages/s for {args.seconds:g} s over {len(TOPICS)} topics")
    for r in results:
        lag = r["lag_ms"]
        print(
            f"flush {r['flush_ms']:>5} ms: {r['turns']} turns, "
            f"lag median {lag['median']:>7} ms  p95 {lag['p95']:>7} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
