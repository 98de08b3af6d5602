"""The in-memory machines of the actor tests: two machines sharing a MemoryChannel, each
with its own MemoryLedger, LeaseGate, poller and outbox, and its own LiveTailActor over a
MemoryTranscriptStore and MemoryLiveTailBuffer; markers and the live tail carried between
them in memory. The lease is played by the test through the gates."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing
import pykka

from baton.actors.delivery_actor import DeliveryActor
from baton.actors.delivery_jobs import DeliveryJobs
from baton.actors.delivery_messages import (
    Polled,
)
from baton.actors.handoff_actor import HandoffActor
from baton.actors.handoff_messages import Wakeup
from baton.actors.lease_actor import ForceTakeover, Yield
from baton.actors.live_tail_actor import LiveTailActor
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.adapters.system_clock import SystemClock
from baton.agents.base import AgentFailed, AgentMessage, Turn
from baton.build import THIS
from baton.channels.memory import MemoryChannel
from baton.core.announce import Announcement
from baton.core.handoff_receiver import ReceiverTiming
from baton.core.identity import PublicIdentity, derive_machine_id
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.live_tail import compile_redactions
from baton.core.registry import entry_from_card
from baton.core.settings import Settings
from baton.core.versions import Versions
from baton.holder.gate import LeaseGate, LeaseView
from baton.holder.outbox import FencedOutbox
from baton.holder.poller import ChannelPoller, Cursor
from baton.stores.ledger_memory import MemoryLedger
from baton.stores.tail_memory import MemoryLiveTailBuffer
from baton.stores.transcript_archive import FileTranscriptArchive
from baton.stores.transcript_memory import MemoryTranscriptStore
from baton.wire.envelope import Envelope
from baton.wire.handoff_transport import HandoffWireTransport
from baton.wire.marker_transport import ReplyMarkerTransport
from baton.wire.tail_transport import LiveTailTransport

SETTINGS = Settings(agent_retries=1, live_tail_flush_ms=100)
FOREVER = float("inf")


def echo(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    if message.text.startswith("fail"):
        raise AgentFailed("crash", "the agent died")
    return [f"echo: {message.text} (earlier turns: {len(history)})"]


class Machine:
    def __init__(
        self,
        seed: int,
        channel: Any,
        router: dict[str, Machine],
        *,
        settings: Settings = SETTINGS,
        agent: Callable[[AgentMessage, Sequence[Turn]], list[str]] = echo,
        ledger: Any = None,
        state: Path | None = None,
        versions: Versions = THIS,
    ) -> None:
        self.settings = settings
        self.versions = versions  # what it runs (its handoff's word; peers see its entry's)
        self.state = state  # its state directory: the transcript archive is written there
        self.agent = agent
        key = nacl.signing.SigningKey(bytes([seed]) * 32)
        self.signer = Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)
        self.id = self.signer.machine_id
        ek = self.encryption_key = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
        ident = PublicIdentity.from_keys(f"m{seed}", bytes(key.verify_key), bytes(ek.public_key))
        card = {**ident.to_dict(), "wire": "tcp://127.0.0.1:9001", "http": "http://127.0.0.1:1"}
        said = Announcement(self.id, 1, (card["wire"],), card["http"], versions=versions)
        self.entry = replace(entry_from_card(card, 0.0), announcement=said)
        self.channel, self.router = channel, router
        self.ledger = MemoryLedger() if ledger is None else ledger
        self.gate, self.cursor = LeaseGate(), Cursor()
        self.transcripts, self.buffer = MemoryTranscriptStore(), MemoryLiveTailBuffer()
        self.counters, self.clock = Counters(), SystemClock()
        self.fenced: list[tuple[int, int]] = []
        self.in_sync: tuple[str, ...] = ()  # holding: the standbys its record names in sync
        self.dropped = False  # drop every envelope this machine sends
        # what the link does to each envelope: the envelopes delivered now (test faults)
        self.link: Callable[[Envelope], list[Envelope]] | None = None
        self.start()

    def start(self) -> None:
        def fenced(epoch: int, highest: int) -> None:
            self.fenced.append((epoch, highest))

        outbox = FencedOutbox(self.channel, self.gate, self.clock, self.counters, fenced)
        self.jobs = DeliveryJobs(self.agent, outbox, self.channel, 2)
        markers = ReplyMarkerTransport(self.id, self.signer, self.send)
        patterns = compile_redactions(self.settings.redactions)
        tail_transport = LiveTailTransport(self.id, self.send, patterns, 1 << 18)
        self.tail = LiveTailActor.start(
            self.id,
            flush_ms=self.settings.live_tail_flush_ms,
            frame_budget=1 << 19,
            transcripts=self.transcripts,
            buffer=self.buffer,
            transport=tail_transport,
            key=self.encryption_key,
            gate=self.gate,
            run_agent=lambda token, entry, history, _: self.jobs.agent(token, entry, history),
            clock=self.clock,
            counters=self.counters,
            archive=None if self.state is None else FileTranscriptArchive(self.state),
        )
        self.ref = DeliveryActor.start(
            self.id,
            settings=self.settings,
            ledger=self.ledger,
            jobs=self.jobs,
            gate=self.gate,
            cursor=self.cursor,
            markers=markers,
            verify=verify_ed25519,
            clock=self.clock,
            counters=self.counters,
            rng=os.urandom,
            tail=self.tail.tell,
            want_in_sync=self.want_in_sync,
        )
        self.lease = LeaseStandIn.start(self)
        self.handoff = HandoffActor.start(
            self.id,
            timing=ReceiverTiming(self.settings.handoff_ack_timeout_ms, self.settings.lease_ttl_ms),
            transport=HandoffWireTransport(self.id, self.signer, self.send),
            gate=self.gate,
            lease=self.lease,
            tail=self.tail,
            delivery=self.ref,
            position=lambda: self.cursor.read()[0] or 0,
            verify=verify_ed25519,
            clock=self.clock,
            counters=self.counters,
            versions=self.versions,
        )
        self.jobs.wire(self.ref)
        self.poller = ChannelPoller(
            self.channel,
            gate=self.gate,
            clock=self.clock,
            cursor=self.cursor,
            deliver=lambda u, e: self.ref.tell(Polled(u, e)),
            counters=self.counters,
            long_poll_s=0.2,
        )
        self.poller.start()
        self.stop_ticks = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def _tick(self) -> None:
        while not self.stop_ticks.wait(0.05):
            try:
                for actor in self.actors:
                    actor.tell(Tick(self.clock.monotonic_ms()))
            except Exception:
                return

    def send(self, env: Envelope) -> bool:
        if self.dropped:
            return True
        for out in self.link(env) if self.link is not None else [env]:
            self.deliver(out)
        return True

    def deliver(self, env: Envelope) -> None:
        target = self.router.get(env.to)
        if target is not None:
            kind = env.type.split("_")[0]
            actor = {"tail": target.tail, "handoff": target.handoff}.get(kind, target.ref)
            actor.tell(EnvelopeReceived(env))

    @property
    def actors(self) -> tuple[Any, ...]:
        return (self.ref, self.tail, self.handoff)

    def peers(self, *others: Machine) -> None:
        for actor in self.actors:
            actor.tell(MembersChanged(tuple(o.entry for o in others)))

    def hold(self, epoch: int | None, in_sync: tuple[str, ...] | None = None) -> None:
        """Hold ``epoch`` (None: stop acting); the others learn this machine holds it.
        Its record names ``in_sync`` (by default the last holder's set, less itself, as
        the lease's acquisition does)."""
        self.gate.publish(epoch, FOREVER if epoch is not None else None)
        if epoch is not None:
            if in_sync is None:
                in_sync = tuple(m for m in self.gate.view().in_sync if m != self.id)
            self.in_sync = tuple(sorted(in_sync))
            self._publish_views(epoch)
            for other in {*self.router.values(), self}:
                phase = Phase.HOLDING if other is self else Phase.STANDBY
                for actor in (other.tail, other.handoff):
                    actor.tell(LeaseChanged(phase, self.id, epoch, "acquired"))

    def _publish_views(self, epoch: int) -> None:
        for other in {*self.router.values(), self}:
            other.gate.publish_view(LeaseView(self.id, epoch, FOREVER, self.in_sync))

    def want_in_sync(self, in_sync: tuple[str, ...]) -> None:
        """What the lease does by CAS: the holder's record names ``in_sync`` now."""
        view = self.gate.view()
        if view.holder == self.id:
            self.in_sync = tuple(sorted(in_sync))
            self._publish_views(view.epoch)

    def wakeup(self, force: bool = False, timeout: float = 30) -> dict[str, Any]:
        answer: Future[dict[str, Any]] = Future()
        self.handoff.tell(Wakeup(force, answer))
        return answer.result(timeout)

    def stop(self) -> None:
        self.stop_ticks.set()
        self.poller.stop()
        for actor in (self.handoff, self.lease, self.ref, self.tail):
            actor.stop(timeout=10)
        self.ticker.join(5)


class LeaseStandIn(pykka.ThreadingActor):
    """Plays the lease's part in a handoff: Yield(to) stands this machine down and makes
    ``to`` hold the next epoch (what the real lease does by CAS)."""

    def __init__(self, machine: Machine) -> None:
        super().__init__()
        self.machine = machine
        self.yields: list[str] = []
        self.forced = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Yield):
            m = message
            epoch = self.machine.gate.view().epoch
            self.machine.hold(None)
            self.yields.append(m.to)
            self.machine.router[m.to].hold(epoch + 1)
        elif isinstance(message, ForceTakeover):
            self.forced += 1


def make_pair(states: tuple[Path, Path] | None = None) -> tuple[MemoryChannel, Machine, Machine]:
    """Two machines that know each other, on one channel, neither holding yet (each
    with its state directory in ``states``, when given: the archive is written)."""
    channel = MemoryChannel("memory")
    router: dict[str, Machine] = {}
    sa, sb = states or (None, None)
    a, b = Machine(10, channel, router, state=sa), Machine(20, channel, router, state=sb)
    router.update({a.id: a, b.id: b})
    a.peers(b)
    b.peers(a)
    return channel, a, b


def tail_caught_up(holder: Machine, standby: Machine) -> bool:
    """The standby's buffer holds the holder's every transcript turn."""
    heads = holder.transcripts.last_seqs()
    return bool(heads) and {t: s for t, (s, _) in standby.buffer.heads().items()} == heads


def accepted(channel: MemoryChannel) -> Counter[int]:
    return Counter(s["reply_to"] for s in channel.sends if s["outcome"] == "accepted")


def all_answered(channel: MemoryChannel, ids: set[int]) -> bool:
    return ids <= set(accepted(channel))


def bot_texts(channel: MemoryChannel, topic: str) -> list[str]:
    return [m["text"] for m in channel.messages(topic) if m["from"] == "bot"]


def post_many(channel: MemoryChannel, n: int, start: int = 0, topics: int = 3) -> set[int]:
    return {
        channel.post_user_message(f"t{i % topics}", f"m{i}", f"c{i:08d}")
        for i in range(start, start + n)
    }
