"""The delivery pipeline the benchmarks drive, in one process: the parts the node builds
(baton.node.delivery_parts) for a holder and, with the guarantees on, an in-sync standby,
against the real bundled chat service over HTTP; and the load they are timed with (a
burst posted before the holder starts, or messages paced at a rate while it runs,
each timed from its post to its accepted reply).

    on   SqliteLedger and SqliteTranscriptStore (WAL, synchronous=FULL); fencing (every
         send carries the epoch and the reply key, the chat service checks both); a
         standby machine with its own DeliveryActor, LiveTailActor, SqliteLedger and
         SqliteLiveTailBuffer (gate closed) to which the holder's reply markers and live
         tail go over an in-memory router: signed or sealed, encoded, decoded,
         verified or opened, persisted. The standby is in sync: each reply waits until
         it has durably recorded the reply's prepared marker and acked it.
    off  MemoryLedger and MemoryTranscriptStore (nothing durable), no fencing, no peers
         (no markers, no live tail).

Both machines and the chat service share this one process (and its GIL); only the agent
runs in other processes (AgentRunner, 2 workers). Not included: the wire (CURVE over
TCP) between machines and the lease store.
"""

from __future__ import annotations

import contextlib
import os
import platform
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
from baton.actors.delivery_messages import Polled
from baton.actors.live_tail_actor import LiveTailActor
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.ticker import Ticker
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.adapters.system_clock import SystemClock
from baton.agents.base import AgentFailed, AgentMessage, Turn
from baton.agents.runner import AgentRunner
from baton.channels.botapi import BotApiChannel
from baton.channels.chat_server import ChatServer
from baton.core.identity import PublicIdentity, derive_machine_id
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.ledger import MessageProcessingLedger
from baton.core.live_tail import LiveTailBuffer, compile_redactions
from baton.core.registry import entry_from_card
from baton.core.settings import Settings
from baton.core.transcript import TranscriptStore
from baton.demo.devmesh import wait_for
from baton.holder.gate import LeaseGate, LeaseView
from baton.holder.outbox import FencedOutbox
from baton.holder.poller import ChannelPoller, Cursor
from baton.node.delivery_parts import MAX_LONG_POLL_S, AgentRoute
from baton.node.root import TICK_MS
from baton.stores.ledger_memory import MemoryLedger
from baton.stores.ledger_sqlite import SqliteLedger
from baton.stores.tail_memory import MemoryLiveTailBuffer
from baton.stores.tail_sqlite import SqliteLiveTailBuffer
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
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def no_agent(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    raise AgentFailed("crash", "a standby never runs the agent")


class Machine:
    """One machine's delivery parts, wired as baton.node.delivery_parts wires them. Nothing
    runs until start(); stop() undoes whatever start() got to."""

    def __init__(
        self,
        name: str,
        chat: ChatServer,
        ledger: MessageProcessingLedger,
        transcripts: TranscriptStore,
        buffer: LiveTailBuffer,
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
            "local",
            chat.url,
            chat.bot_token,
            fencing=fencing,
            poller_id=self.id,
            counters=self.counters,
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
            self.id,
            flush_ms=self.settings.live_tail_flush_ms,
            frame_budget=self.settings.max_frame_bytes // 3,
            transcripts=self.transcripts,
            buffer=self.buffer,
            transport=tail,
            key=self.box,
            gate=self.gate,
            run_agent=AgentRoute(jobs),  # as the node's, with no pool
            clock=self.clock,
            counters=self.counters,
        )
        self.actor = DeliveryActor.start(
            self.id,
            settings=self.settings,
            ledger=self.ledger,
            jobs=jobs,
            gate=self.gate,
            cursor=self.cursor,
            markers=markers,
            verify=verify_ed25519,
            clock=self.clock,
            counters=self.counters,
            rng=os.urandom,
            tail=self.tail.tell,
        )
        jobs.wire(self.actor)
        actor = self.actor
        self.poller = ChannelPoller(
            self.channel,
            gate=self.gate,
            clock=self.clock,
            cursor=self.cursor,
            deliver=lambda u, e: actor.tell(Polled(u, e)),
            counters=self.counters,
            long_poll_s=LONG_POLL_S,
        )

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
            self.tail.tell(
                LeaseChanged(Phase.STANDBY, o.id, 1, "holder changed")
            )  # the holder holds epoch 1 for ever

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


def post_messages(chat: ChatServer, n: int, run: int) -> set[int]:
    ids: set[int] = set()
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        body = {"text": f"message {i}", "client_id": f"bench-{run}-{i:06d}"}
        ids.add(int(chat.api(f"/api/topics/{topic}/messages", body)["message_id"]))
    return ids


def answered_all(chat: ChatServer, ids: set[int]) -> list[dict[str, Any]] | None:
    """The accepted sends once every message in ``ids`` has one, else None."""
    sends = accepted_sends(chat, ids)
    return sends if {s["reply_to"] for s in sends} >= ids else None


def accepted_sends(chat: ChatServer, ids: set[int]) -> list[dict[str, Any]]:
    sends = chat.api("/api/sends")["sends"]
    return [s for s in sends if s["outcome"] == "accepted" and s["reply_to"] in ids]


class Rig:
    """A chat service, an agent runner and the machines of ``mode`` ("on": a holder and
    an in-sync standby; "off": a holder alone), with a ticker; everything started is
    stopped by ``stack`` on the way out, whatever happens."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path, mode: str, agent: str) -> None:
        on = mode == "on"
        self.chat = chat = ChatServer(tmp / "chat.sqlite")
        stack.callback(chat.stop)
        chat.start()
        runner = AgentRunner(agent, workers=AGENT_WORKERS, timeout_s=600)
        stack.callback(runner.stop)
        runner.start()
        router: dict[str, Machine] = {}
        self.machines: list[Machine] = []

        def stores(name: str) -> tuple[MessageProcessingLedger, TranscriptStore, LiveTailBuffer]:
            made: tuple[MessageProcessingLedger, TranscriptStore, LiveTailBuffer] = (
                (
                    SqliteLedger(tmp / f"{name}.sqlite"),
                    SqliteTranscriptStore(tmp / f"{name}-transcripts.sqlite"),
                    SqliteLiveTailBuffer(tmp / f"{name}-tail.sqlite"),
                )
                if on
                else (MemoryLedger(), MemoryTranscriptStore(), MemoryLiveTailBuffer())
            )
            for store in made:
                stack.callback(store.close)
            return made

        for name in ["holder", "standby"] if on else ["holder"]:
            run_agent = runner.run if name == "holder" else no_agent
            ledger, transcripts, buffer = stores(name)
            m = Machine(
                name, chat, ledger, transcripts, buffer,
                fencing=on, run_agent=run_agent, router=router,
            )  # fmt: skip
            stack.callback(m.stop)
            m.start()
            router[m.id] = m
            self.machines.append(m)
        self.holder = self.machines[0]
        if on:
            holder, standby = self.machines
            # the lease names the standby in sync: each reply waits until the standby
            # has durably recorded its prepared marker (the synchronous markers)
            for m in self.machines:
                m.gate.publish_view(LeaseView(holder.id, 1, None, (standby.id,)))
            holder.peers(standby)
            standby.peers(holder)
            assert standby.poller is not None
            standby.poller.start()  # it idles: its gate stays closed
        actors = [a for m in self.machines for a in (m.actor, m.tail)]
        ticker = Ticker(SystemClock(), actors, TICK_MS)
        stack.callback(ticker.stop)
        ticker.start()

        def quiesce() -> None:  # runs before the machines stop: no poll is left waiting
            for m in self.machines:
                m.gate.publish(None, None)
            if chat.store is not None:
                chat.store.interrupt()

        stack.callback(quiesce)


def paced(
    chat: ChatServer, n: int, rate: float, tag: str, topics: Sequence[str]
) -> dict[int, float]:
    """Post ``n`` messages round-robin over ``topics`` at ``rate`` a second; message id ->
    the wall time its post returned (the message was in the channel from then on)."""
    posted: dict[int, float] = {}
    started = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        body = {"text": f"paced {i}", "client_id": f"{tag}-{i:06d}"}
        topic = topics[i % len(topics)]
        posted[int(chat.api(f"/api/topics/{topic}/messages", body)["message_id"])] = time.time()
    return posted


def latencies_ms(chat: ChatServer, posted: dict[int, float], deadline_s: float) -> list[float]:
    """Once every message in ``posted`` has its accepted reply (each exactly one): the
    time from each post to its reply's accepted send, in ms."""
    sends = wait_for(lambda: answered_all(chat, set(posted)), deadline_s, "paced replies", 0.05)
    per_message = Counter(s["reply_to"] for s in sends)
    if set(per_message.values()) != {1}:
        raise RuntimeError("a paced message got more than one accepted reply")
    return [1000 * (s["time"] - posted[s["reply_to"]]) for s in sends]


def latency_line(lat: dict[str, float]) -> str:
    return (
        f"p50 {lat['p50_ms']:>8.1f} ms  p95 {lat['p95_ms']:>8.1f} ms  max {lat['max_ms']:>8.1f} ms"
    )


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "max_ms": round(max(values), 1),
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
