"""Benchmark: replies per second end to end, with the delivery guarantees on and off.

One process builds the delivery pipeline the node builds (baton.delivery_parts): the
real bundled chat service over HTTP (a fresh SQLite file per run), the real Bot API
adapter, the echo agent in real worker processes (AgentRunner, 2 workers), a
DeliveryActor with its DeliveryJobs, FencedOutbox, LeaseGate, Cursor, ChannelPoller and
a Ticker at the node's tick. Two modes, alternated run by run (on, off, on, off, ...) so
that drift hits both alike:

    on   SqliteLedger and SqliteTranscriptStore (WAL, synchronous=FULL); fencing (every
         send carries the epoch and the reply key, the chat service checks both); a
         standby machine with its own DeliveryActor, LiveTailActor, SqliteLedger and
         SqliteTailBuffer (gate closed) to which the holder's reply markers and live
         tail go over an in-memory router: signed or sealed, encoded, decoded,
         verified or opened, persisted. The standby is in sync: each reply waits until
         it has durably recorded the reply's prepared marker and acked it.
    off  MemoryLedger and MemoryTranscriptStore (nothing durable), no fencing, no peers
         (no markers, no live tail).

Per run: N user messages over 5 topics are posted to the chat service first (its HTTP
API); then the timer starts, the holder's gate opens (its actor is told at once, not at
the next tick) and its poller starts (so no idle wait of the poller is timed).
The run ends when the chat service's send log holds an accepted bot reply for every
message (polled over HTTP every 20 ms, with a deadline); elapsed is the time of the last
accepted send in that log minus the moment the gate opened, replies/s = N / elapsed.
Every run also checks that each message got exactly one accepted reply, that sends
carried the epoch and reply key exactly when fencing was on, and (on) that the standby
persisted a reply-committed marker for every message (after the timer stopped).

Both machines and the chat service share this one process (and its GIL); only the agent
runs in other processes. Not included: the wire (CURVE over TCP) between machines and
the lease store. The ledgers' fsyncs land in the temporary directory's filesystem,
which the report names.

    python -m tools.bench.throughput --runs 5 --messages 300 [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing
import pykka

from baton.actors.delivery_actor import DeliveryActor
from baton.actors.delivery_jobs import DeliveryJobs
from baton.actors.delivery_messages import HolderIs, Polled
from baton.actors.lease_actor import MembersChanged
from baton.actors.live_tail_actor import LiveTailActor
from baton.actors.messages import EnvelopeReceived, Tick
from baton.actors.ticker import Ticker
from baton.agents.base import AgentFailed, AgentMessage, Turn
from baton.agents.runner import AgentRunner
from baton.channels.botapi import BotApiChannel
from baton.channels.chat_server import ChatServer
from baton.clock import SystemClock
from baton.core.identity import PublicIdentity, derive_machine_id
from baton.core.ledger import Ledger
from baton.core.live_tail import TailBuffer, compile_redactions
from baton.core.registry import entry_from_card
from baton.core.settings import Settings
from baton.core.transcript import TranscriptStore
from baton.delivery_parts import MAX_LONG_POLL_S
from baton.devmesh import wait_for
from baton.gate import LeaseGate, LeaseView
from baton.metrics import Counters
from baton.node import TICK_MS
from baton.outbox import FencedOutbox
from baton.poller import ChannelPoller, Cursor
from baton.signing import Ed25519Signer, verify_ed25519
from baton.stores.ledger_memory import MemoryLedger
from baton.stores.ledger_sqlite import SqliteLedger
from baton.stores.tail_memory import MemoryTailBuffer
from baton.stores.tail_sqlite import SqliteTailBuffer
from baton.stores.transcript_memory import MemoryTranscriptStore
from baton.stores.transcript_sqlite import SqliteTranscriptStore
from baton.wire.envelope import Envelope, decode, encode
from baton.wire.marker_transport import ReplyMarkerTransport
from baton.wire.tail_transport import LiveTailTransport

SETTINGS = Settings(agent="echo")
TOPICS = [f"t{i}" for i in range(5)]
AGENT_WORKERS = 2
CHECK_EVERY_S = 0.02
LONG_POLL_S = min(MAX_LONG_POLL_S, SETTINGS.lease_ttl_ms / 3000)
MODES = {
    "on": "SQLite ledger and transcripts, fencing, markers and live tail to a standby",
    "off": "memory ledger and transcripts, no fencing, no markers, no live tail",
}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=30) as response:
        return json.loads(response.read())


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def no_agent(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    raise AgentFailed("crash", "a standby never runs the agent")


class Machine:
    """One machine's delivery parts, wired as baton.delivery_parts wires them. Nothing
    runs until start(); stop() undoes whatever start() got to."""

    def __init__(
        self,
        name: str,
        url: str,
        ledger: Ledger,
        transcripts: TranscriptStore,
        buffer: TailBuffer,
        *,
        fencing: bool,
        run_agent: Callable[[AgentMessage, Sequence[Turn]], list[str]],
        router: dict[str, Machine],
        settings: Settings = SETTINGS,
    ) -> None:
        self.settings = settings
        key = nacl.signing.SigningKey.generate()
        self.id = derive_machine_id(bytes(key.verify_key))
        self.signer = Ed25519Signer(self.id, key)
        box = self.box = nacl.public.PrivateKey.generate()
        ident = PublicIdentity.from_keys(name, bytes(key.verify_key), bytes(box.public_key))
        card = {**ident.to_dict(), "wire": "tcp://127.0.0.1:9", "http": "http://127.0.0.1:9"}
        self.entry = entry_from_card(card, 0.0)
        self.ledger, self.router, self.run_agent = ledger, router, run_agent
        self.transcripts, self.buffer = transcripts, buffer
        self.gate, self.cursor = LeaseGate(), Cursor()
        self.counters, self.clock = Counters(), SystemClock()
        self.channel = BotApiChannel(
            "local", url, "local", fencing=fencing, poller_id=self.id, counters=self.counters
        )
        self.fenced: list[tuple[int, int]] = []
        self.actor: Any = None
        self.tail: Any = None
        self.poller: ChannelPoller | None = None

    def start(self) -> None:
        outbox = FencedOutbox(self.channel, self.gate, self.clock, self.counters, self._on_fenced)
        jobs = DeliveryJobs(self.run_agent, outbox, self.channel, self.settings.agent_workers)
        markers = ReplyMarkerTransport(self.id, self.signer, self.send)
        patterns = compile_redactions(self.settings.redactions)
        tail = LiveTailTransport(self.id, self.send, patterns, self.settings.max_frame_bytes // 4)
        self.tail = LiveTailActor.start(
            self.id, self.settings.live_tail_flush_ms, self.settings.max_frame_bytes // 3,
            self.transcripts, self.buffer, tail, self.box, self.gate, jobs.agent, self.clock,
            self.counters,
        )  # fmt: skip
        self.actor = DeliveryActor.start(
            self.id, self.settings, self.ledger, jobs, self.gate, self.cursor, markers,
            verify_ed25519, self.clock, self.counters, os.urandom, self.tail.tell,
        )  # fmt: skip
        jobs.actor = self.actor
        actor = self.actor
        self.poller = ChannelPoller(
            self.channel, self.gate, self.clock, self.cursor,
            lambda u: actor.tell(Polled(u)), self.counters, LONG_POLL_S,
        )  # fmt: skip

    def _on_fenced(self, epoch: int, highest: int) -> None:
        self.fenced.append((epoch, highest))

    def send(self, env: Envelope) -> bool:
        """The wire, minus CURVE and TCP: the envelope is encoded and decoded."""
        target = self.router.get(env.to)
        actor = (
            None if target is None else target.tail if env.type.startswith("tail") else target.actor
        )
        if actor is not None:
            received = decode(encode(env), self.settings.max_frame_bytes)
            with contextlib.suppress(pykka.ActorDeadError):
                actor.tell(EnvelopeReceived(received))
        return True

    def peers(self, *others: Machine) -> None:
        for actor in (self.actor, self.tail):
            actor.tell(MembersChanged(tuple(o.entry for o in others)))
        for o in others:
            self.tail.tell(HolderIs(o.id, 1))  # the holder holds epoch 1 for ever

    def hold(self) -> None:
        """Open the gate (epoch 1 for ever), tell the actors now, start polling."""
        self.gate.publish(1, float("inf"))
        for actor in (self.actor, self.tail):
            actor.tell(Tick(self.clock.monotonic_ms()))
        assert self.poller is not None
        self.poller.start()

    def stop(self) -> None:
        self.gate.publish(None, None)
        if self.poller is not None:
            self.poller.stop()
        for actor in (self.actor, self.tail):
            if actor is not None:
                actor.stop(timeout=10)


def post_messages(url: str, n: int, run: int) -> set[int]:
    ids: set[int] = set()
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        body = {"text": f"message {i}", "client_id": f"bench-{run}-{i:06d}"}
        ids.add(int(http(f"{url}/api/topics/{topic}/messages", body)["message_id"]))
    return ids


def answered_all(url: str, ids: set[int]) -> list[dict[str, Any]] | None:
    """The accepted sends once every message in ``ids`` has one, else None."""
    sends = accepted_sends(url, ids)
    return sends if {s["reply_to"] for s in sends} >= ids else None


def accepted_sends(url: str, ids: set[int]) -> list[dict[str, Any]]:
    sends = http(f"{url}/api/sends")["sends"]
    return [s for s in sends if s["outcome"] == "accepted" and s["reply_to"] in ids]


def one_run(mode: str, n: int, run: int, deadline_s: float) -> dict[str, Any]:
    """One run of ``mode`` ("on" or "off"); everything it starts is stopped on the way
    out, whatever happens."""
    on = mode == "on"
    tmp = Path(tempfile.mkdtemp(prefix=f"baton-bench-{mode}-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        chat = ChatServer(tmp / "chat.sqlite")
        stack.callback(chat.stop)
        chat.start()
        runner = AgentRunner("echo", workers=AGENT_WORKERS, timeout_s=30)
        stack.callback(runner.stop)
        runner.start()
        router: dict[str, Machine] = {}
        machines: list[Machine] = []

        def stores(name: str) -> tuple[Ledger, TranscriptStore, TailBuffer]:
            made: tuple[Ledger, TranscriptStore, TailBuffer] = (
                (
                    SqliteLedger(tmp / f"{name}.sqlite"),
                    SqliteTranscriptStore(tmp / f"{name}-transcripts.sqlite"),
                    SqliteTailBuffer(tmp / f"{name}-tail.sqlite"),
                )
                if on
                else (MemoryLedger(), MemoryTranscriptStore(), MemoryTailBuffer())
            )
            for store in made:
                stack.callback(store.close)
            return made

        names = ["holder", "standby"] if on else ["holder"]
        for name in names:
            agent = runner.run if name == "holder" else no_agent
            ledger, transcripts, buffer = stores(name)
            m = Machine(
                name, chat.url, ledger, transcripts, buffer,
                fencing=on, run_agent=agent, router=router,
            )  # fmt: skip
            stack.callback(m.stop)
            m.start()
            router[m.id] = m
            machines.append(m)
        if on:
            holder, standby = machines
            # the lease names the standby in sync: each reply waits until the standby
            # has durably recorded its prepared marker (the synchronous markers)
            for m in machines:
                m.gate.publish_view(LeaseView(holder.id, 1, None, (standby.id,)))
            holder.peers(standby)
            standby.peers(holder)
            assert standby.poller is not None
            standby.poller.start()  # it idles: its gate stays closed
        holder = machines[0]
        ticker = Ticker(SystemClock(), [a for m in machines for a in (m.actor, m.tail)], TICK_MS)
        stack.callback(ticker.stop)
        ticker.start()

        def quiesce() -> None:  # runs before the machines stop: no poll is left waiting
            for m in machines:
                m.gate.publish(None, None)
            if chat.store is not None:
                chat.store.interrupt()

        stack.callback(quiesce)

        ids = post_messages(chat.url, n, run)
        started_wall = time.time()
        holder.hold()
        sends = wait_for(
            lambda: answered_all(chat.url, ids),
            deadline_s,
            f"{mode} run {run + 1}: all {n} messages answered",
            CHECK_EVERY_S,
        )
        elapsed = max(s["time"] for s in sends) - started_wall
        result = {
            "rps": round(n / elapsed, 1),
            "elapsed_s": round(elapsed, 3),
            **check(mode, n, ids, machines, chat.url),
        }
    return result


def check(mode: str, n: int, ids: set[int], machines: list[Machine], url: str) -> dict[str, Any]:
    """After the timer: exactly once, fencing as the mode says, markers at the standby."""
    if machines[0].fenced:
        raise RuntimeError(f"{mode}: the holder was fenced: {machines[0].fenced}")
    sends = [s for s in http(f"{url}/api/sends")["sends"] if s["reply_to"] in ids]
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
    return {
        "runs": runs,
        "median_rps": round(statistics.median(rps), 1),
        "min_rps": min(rps),
        "max_rps": max(rps),
        "median_elapsed_s": round(statistics.median(elapsed), 3),
        "p95_elapsed_s": round(percentile(elapsed, 0.95), 3),
    }


def filesystem_of(path: str) -> str:
    """The type of the filesystem holding ``path`` (the ledgers' fsyncs land there)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            inside = len(fields) > 2 and Path(path).is_relative_to(fields[1])
            if inside and len(fields[1]) >= len(best):
                best, kind = fields[1], f"{fields[2]} ({fields[0]})"
    return kind


def machine_info() -> dict[str, Any]:
    tmp = tempfile.gettempdir()
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "temp_dir": tmp,
        "temp_fs": filesystem_of(os.path.realpath(tmp)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per mode")
    parser.add_argument("--messages", type=int, default=300, help="messages per run")
    parser.add_argument("--deadline-s", type=float, default=120.0, help="per run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.messages < 1:
        parser.error("--runs and --messages must be at least 1")
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for i in range(args.runs):
        for mode in ("on", "off"):
            run = one_run(mode, args.messages, i, args.deadline_s)
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
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # everything started was stopped on the way out
        raise SystemExit(130) from None
