"""LiveTailActor: the transcripts and the live tail of one machine (docs/DESIGN.md, "Live
tail and planned handoff").

It owns the TranscriptStore and the LiveTailBuffer. The shared design's LiveTailSource
is no class of its own: it is this actor's holder side (the methods under "the holder"
below; status shows ``tail.role`` "source" there and "buffer" on a standby). On the
holder it adds a turn to its topic's transcript when the DeliveryActor says a message is
done, starts each agent run with the topic's history, and every ``live_tail_flush_ms``
sends each standby the turns it has not confirmed (baton.core.live_tail), redacted and
sealed to that standby (LiveTailTransport). A flush that probed a standby or was cut
short by the frame size is followed at once, on its ack, by the next, so a new term or a
long backlog does not wait interval by interval. On a standby it takes the frames of the
current holder alone, at the current epoch, into the buffer, still sealed, and acks how
far it matches. It also keeps, loose and redacted, the turns the holder's markers said
were done (TurnSeen from the DeliveryActor; baton.actors.loose_turns) until the chain
brings their keys. When this machine starts holding a new epoch, the buffer and then the
loose turns are replayed into the transcripts (baton.actors.tail_replay) before any turn
is added or agent started, so no turn whose replies the user saw is lost to a crash of
the holder; the loose turns are then forgotten. A holder adds its turns on TurnDone; a
TurnSeen that reaches it after its replay (sent while delivery stood by, taken after the
tick that replayed) is appended then, by the replay's rules.

A peer's bytes are opened strictly; whatever is refused is logged, counted and dropped.
``flush_ms`` 0 streams nothing (a mesh without a lease store: no standby ever takes
over, and none would know whose flushes to take).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import nacl.public
import pykka

from baton.actors.loose_turns import LooseTurn, LooseTurns
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.tail_archive import ArchiveWork
from baton.actors.tail_messages import (
    CatchUpTo,
    ConfirmTo,
    GetTail,
    StartAgent,
    TailHeads,
    TurnDone,
    TurnSeen,
)
from baton.actors.tail_replay import add_loose, replay
from baton.adapters.metrics import Counters
from baton.agents.base import Turn
from baton.core.clock import Clock
from baton.core.errors import TailError, TailRefused, TranscriptError
from baton.core.handoff import Heads, heads_of
from baton.core.lease_types import LeaseChanged
from baton.core.ledger import LedgerEntry
from baton.core.live_tail import (
    Follow,
    FrameResult,
    LiveTailBuffer,
    TailFrame,
    acked,
    match_point,
    start_of,
)
from baton.core.registry import MachineEntry
from baton.core.transcript import TranscriptStore
from baton.core.transcript_archive import TranscriptArchive
from baton.holder.gate import LeaseGate
from baton.wire.envelope import Envelope
from baton.wire.tail_transport import MAX_FRAMES, LiveTailTransport, open_ack, open_flush

log = logging.getLogger("baton.tail")

HISTORY_LIMIT = 1000

#: Starts an agent job: (token, entry, history). Must not block (it submits).
RunAgent = Callable[[int, LedgerEntry, Sequence[Turn], int], None]  # token, entry, history, term


class LiveTailActor(pykka.ThreadingActor):
    def __init__(
        self,
        me: str,
        *,
        flush_ms: int,
        frame_budget: int,
        transcripts: TranscriptStore,
        buffer: LiveTailBuffer,
        transport: LiveTailTransport,
        key: nacl.public.PrivateKey,
        gate: LeaseGate,
        run_agent: RunAgent,
        clock: Clock,
        counters: Counters,
        archive: TranscriptArchive | None = None,
    ) -> None:
        super().__init__()
        self.me = me
        self.flush_ms = flush_ms
        self.frame_budget = frame_budget
        self.transcripts = transcripts
        self.buffer = buffer
        self.transport = transport
        self.key = key
        self.gate = gate
        self.run_agent = run_agent
        self.clock = clock
        self.counters = counters
        self.peers: dict[str, MachineEntry] = {}
        self.holder: tuple[str | None, int] = (None, 0)
        self.term: int | None = None
        self.replayed = 0  # the newest epoch whose term began with a replay
        self.follows: dict[tuple[str, str], Follow] = {}
        self.unfinished: set[str] = set()  # standbys whose last flush left work undone
        self.next_flush = 0.0
        self.catching_up: CatchUpTo | None = None  # a handoff's target, pulling
        self.confirming: ConfirmTo | None = None  # a handoff's holder, flushing to the end
        self.loose = LooseTurns()  # a standby's turns known from the markers alone
        # the transcript archive in the state directory (None: the state is not synced)
        work = None if archive is None else ArchiveWork(archive, transport.patterns, counters)
        self.archive = work

    # --- its resources: the transcripts and the buffer, which it alone owns ------------

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *failure: object) -> None:
        """pykka calls this instead of on_stop when a message raised out of the actor."""
        self._close()

    def _close(self) -> None:
        for store in (self.buffer, self.transcripts):  # one failing closes the other all the same
            try:
                store.close()
            except (TailError, TranscriptError) as exc:
                log.warning("tail: closing %r: %s", store, exc.detail)

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        except (TailError, TranscriptError) as exc:
            # The disk or a bug: this step is lost, the actor and what is stored live on.
            self.counters.inc("tail.errors")
            log.exception("tail: %s failed: %s", type(message).__name__, exc.detail)
            if isinstance(message, GetTail):
                raise
            return None

    def _receive(self, message: Any) -> Any:
        match message:
            case Tick(now_ms=now):
                self._tick(now)
            case StartAgent(token=token, entry=entry, epoch=epoch):
                self.run_agent(token, entry, self._history(entry, epoch), epoch)
            case TurnDone(entry=entry, epoch=epoch):
                self._begun(epoch)
                self._append(entry)
            case TurnSeen(entry=entry):
                self._seen(entry)
            case EnvelopeReceived(envelope=env) if env.type == "tail":
                self._flush_received(env)
            case EnvelopeReceived(envelope=env) if env.type == "tail_ack":
                self._ack_received(env)
            case LeaseChanged(holder=holder, epoch=epoch):
                self.holder = (holder, epoch)
                self._tick(self.clock.monotonic_ms())  # a new term begins now
            case MembersChanged(peers=peers):
                self.peers = {p.machine_id: p for p in peers}
            case TailHeads(reply=reply):
                reply(self._heads())
            case CatchUpTo():
                self.catching_up = message
                self._catch_up(self.holder[1])
            case ConfirmTo(peer=peer):
                self.confirming = message
                self._confirm(peer)
            case GetTail():
                return self._view()
            case _:
                raise TypeError(f"LiveTailActor: unexpected message {message!r}")
        return None

    # --- the holder ------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        epoch = self.gate.current(now)
        if epoch != self.term:
            self.term = epoch
            self.follows.clear()  # a new term learns afresh what each standby holds
            self.unfinished.clear()
            if epoch is not None:
                self._begun(epoch)
        if self.term is not None and self.flush_ms > 0 and now >= self.next_flush:
            self.next_flush = now + self.flush_ms
            for peer in self.peers:
                self._flush(peer)
        self._archive(now)

    def _archive(self, now: float) -> None:
        if self.archive is not None:
            self.archive.tick(self.term is not None, self.transcripts, self.buffer, now)

    def _begun(self, epoch: int) -> None:
        """Before this machine adds a turn as holder of ``epoch``: the transcripts take
        what the live tail brought while it stood by (once per epoch)."""
        if epoch <= self.replayed:
            if epoch == self.replayed and len(self.loose):
                # heard while the gate lapsed within this term (a renewal confirmed
                # late): no other holder came between, so they are its predecessor's
                self._add_late(self.loose.take(before=epoch), epoch)
            return
        self.replayed = epoch
        loose = self.loose.take()  # forgotten whatever the replay does
        now = self.clock.monotonic_ms()
        if self.archive is not None:  # the archive's chain first, then the buffer's
            self.archive.take_in_all(self.transcripts, self.buffer, now)
        done = replay(self.buffer, self.transcripts, self.key, self.counters, loose)
        if self.archive is not None:
            self.archive.begin(self.transcripts, now)
        if done.topics:
            log.info(
                "tail: epoch %d: replayed %d turns of %d topics (%d own turns dropped)",
                epoch,
                done.turns,
                done.topics,
                done.dropped,
            )
        log.info(
            "tail: epoch %d: added %d loose turns from the markers (%d stale skipped)",
            epoch,
            done.loose_added,
            done.loose_stale,
        )

    def _history(self, entry: LedgerEntry, epoch: int) -> list[Turn]:
        """The topic's turns before ``entry``. Should the transcripts fail (the disk, a
        corrupt row), the agent runs all the same, without history: a reply with less
        context beats a topic that waits for ever."""
        try:
            self._begun(epoch)
            turns = self.transcripts.history(entry.topic, HISTORY_LIMIT + 1)
        except (TailError, TranscriptError) as exc:
            self.counters.inc("tail.history_failed")
            log.error("tail: no history for %s: %s", entry.key, exc.detail)
            return []
        mine = [Turn(t.text, t.replies) for t in turns if t.ledger_key != entry.key]
        return mine[-HISTORY_LIMIT:]

    def _append(self, entry: LedgerEntry) -> None:
        replies = tuple(r.text for r in entry.replies)
        turn = self.transcripts.append(
            entry.topic,
            entry.key,
            entry.message_id,
            entry.text,
            replies=replies,
            at_ms=entry.received_ms,
        )
        self.counters.inc("tail.turns")
        if self.archive is not None:
            self.archive.changed(turn.topic, turn.seq)

    def _flush(self, peer: str) -> None:
        """Send ``peer`` the turns it has not confirmed, as many as one frame allows."""
        entry = self.peers.get(peer)
        if entry is None or self.term is None:
            return
        heads = self.transcripts.last_seqs()
        frames: list[TailFrame] = []
        budget = self.frame_budget
        more = False  # probing, or cut short: the ack brings the next flush at once
        for topic, head in sorted(heads.items()):
            follow = self.follows.get((peer, topic))
            start = start_of(follow, head)
            if start is None:
                continue
            more = more or follow is None or follow.confirmed is None
            turns = self.transcripts.turns(topic, max(0, start - 2), MAX_FRAMES + 1)
            prev = turns[0].ledger_key if start > 1 and turns and turns[0].seq < start else ""
            for turn in (t for t in turns if t.seq >= start):
                if len(frames) >= MAX_FRAMES or budget <= 0:
                    more = True
                    break  # the rest goes in the next flush
                box = self.transport.seal(turn, entry.identity.encryption_public)
                budget -= len(box) * 4 // 3 + 100  # base64 and the frame's fields
                try:
                    frames.append(TailFrame(topic, turn.seq, turn.ledger_key, prev, box))
                except TailRefused as exc:  # a topic or key too long for a frame: not sent
                    self.counters.inc("tail.unframeable")
                    log.error("tail: turn %d of %s cannot be sent: %s", turn.seq, topic, exc.detail)
                    break
                prev = turn.ledger_key
        (self.unfinished.add if more else self.unfinished.discard)(peer)
        if frames and self.transport.flush(peer, self.term, frames, heads):
            self.counters.inc("tail.frames_sent", len(frames))

    def _ack_received(self, env: Envelope) -> None:
        if self.term is None or env.epoch != self.term or env.sender not in self.peers:
            self.counters.inc("tail.ack_ignored")
            return
        try:
            have, pull = open_ack(env)
        except TailRefused as exc:
            self._refused(env, exc)
            return
        for topic, (seq, key) in have.items():
            head = self.transcripts.last_seq(topic)
            mine = self._turn_key(topic, seq)
            pair = (env.sender, topic)
            self.follows[pair] = acked(self.follows.get(pair), seq, key, mine, head)
        if self.confirming is not None and self.confirming.peer == env.sender:
            self._confirm(env.sender)
        elif pull or env.sender in self.unfinished:
            self._flush(env.sender)

    # --- a standby -------------------------------------------------------------------

    def _seen(self, entry: LedgerEntry) -> None:
        """The markers say ``entry`` is done: keep its turn loose until the chain brings
        it or this machine takes over (the replay appends it). Delivery tells only while
        it stands by, but this actor learns of the lease by the gate, at its own tick:
        a TurnSeen queued behind the tick that replayed (either actor's mailbox behind,
        a slow disk) gets its turn now, as the replay would have (``tail.loose_late``),
        if an older term made it (a newer holder's, with this machine fenced, waits)."""
        turn = LooseTurn.of(entry, self.transport.patterns)
        epoch = self.gate.current(self.clock.monotonic_ms())
        if epoch is not None and epoch == self.replayed and turn.epoch < epoch:
            self._add_late({turn.topic: [turn]}, epoch)
            return
        dropped = self.loose.add(turn)
        if dropped:
            self.counters.inc("tail.loose_dropped", dropped)

    def _add_late(self, turns: dict[str, list[LooseTurn]], epoch: int) -> None:
        """Turns its predecessor made, heard after this term's replay: appended by the
        replay's rules, each topic's archive part written again."""
        if not turns:
            return
        heads = {topic: self.transcripts.last_seq(topic) for topic in turns}
        self.counters.inc("tail.loose_late", sum(len(t) for t in turns.values()))
        done = add_loose(self.transcripts, turns, self.counters)
        log.info("tail: epoch %d: %d turns of its predecessor heard after the replay "
                 "(%d added)", epoch, sum(len(t) for t in turns.values()),
                 done.loose_added)  # fmt: skip
        for topic, head in heads.items():
            if self.archive is not None and self.transcripts.last_seq(topic) > head:
                self.archive.changed(topic, head + 1)

    def _flush_received(self, env: Envelope) -> None:
        holder, epoch = self.holder
        if self.term is not None or env.sender != holder or env.epoch != epoch:
            # only the holder streams, at the epoch this machine knows it holds
            self.counters.inc("tail.refused.not_holder")
            log.info("tail: refused a flush from %s at epoch %d", env.sender, env.epoch)
            return
        try:
            frames, heads = open_flush(env)
        except TailRefused as exc:
            self._refused(env, exc)
            return
        taken: dict[str, int] = {}
        for frame in frames:
            result = self.buffer.take(frame, heads.get(frame.topic))
            self.counters.inc(f"tail.frame.{result.value}")
            if result is not FrameResult.REFUSED:
                taken[frame.topic] = max(taken.get(frame.topic, 0), frame.seq)
                self.loose.discard(frame.key)  # the chain has it now
        if self.catching_up is not None and self.catching_up.holder == env.sender:
            self._catch_up(env.epoch, heads, taken)
        else:
            self.transport.ack(env.sender, env.epoch, self._have(heads, taken), False)

    def _have(self, heads: dict[str, int], taken: dict[str, int]) -> dict[str, tuple[int, str]]:
        held = self.buffer.heads()
        have = {}
        for topic in heads:
            seq = taken.get(topic)
            key = None if seq is None else self._frame_key(topic, seq)
            have[topic] = match_point(seq, key, held.get(topic))
        return have

    def _frame_key(self, topic: str, seq: int) -> str | None:
        """The key of the buffer's frame ``seq`` of ``topic`` (None: none there)."""
        found = self.buffer.frames(topic, seq - 1, 1) if seq >= 1 else []
        return found[0].key if found and found[0].seq == seq else None

    def _turn_key(self, topic: str, seq: int) -> str | None:
        """The ledger key of the transcript's turn ``seq`` of ``topic`` (None: none)."""
        found = self.transcripts.turns(topic, seq - 1, 1) if seq >= 1 else []
        return found[0].ledger_key if found and found[0].seq == seq else None

    # --- a planned handoff --------------------------------------------------------

    def _heads(self) -> Heads:
        heads = {}
        for topic, seq in self.transcripts.last_seqs().items():
            key = self._turn_key(topic, seq)
            if key is not None:
                heads[topic] = (seq, key)
        return heads_of(heads)

    def _catch_up(
        self, epoch: int, heads: dict[str, int] | None = None, taken: dict[str, int] | None = None
    ) -> None:
        """A standby pulling up to a begin's heads: done once its buffer holds each of
        them; until then every ack asks for the next flush at once (pull)."""
        waiter = self.catching_up
        assert waiter is not None
        missing = [h for h in waiter.heads if not self._holds(h)]
        if not missing or self.clock.monotonic_ms() >= waiter.until:
            self.catching_up = None
            if not missing:
                waiter.reply()
            missing = []
        else:
            self.counters.inc("tail.pulls")
        wanted = dict.fromkeys((t for t, _, _ in waiter.heads), 0) | (heads or {})
        self.transport.ack(waiter.holder, epoch, self._have(wanted, taken or {}), bool(missing))

    def _holds(self, head: tuple[str, int, str]) -> bool:
        topic, seq, key = head
        return self._frame_key(topic, seq) == key

    def _confirm(self, peer: str) -> None:
        """The holder at the end of a handoff: done once ``peer`` has confirmed every
        turn; otherwise flush to it again at once."""
        waiter = self.confirming
        if waiter is None or waiter.peer != peer:
            return
        if self.clock.monotonic_ms() >= waiter.until or self.term is None:
            self.confirming = None
            return
        heads = self.transcripts.last_seqs()
        follows = [self.follows.get((peer, t)) or Follow() for t in heads]
        if any(f.confirmed != head for f, head in zip(follows, heads.values(), strict=True)):
            self._flush(peer)
        else:
            self.confirming = None
            waiter.reply()

    def _refused(self, env: Envelope, exc: TailRefused) -> None:
        self.counters.inc("tail.refused.malformed")
        log.warning("tail: %s from %s refused: %s", env.type, env.sender, exc.detail)

    # --- status ----------------------------------------------------------------------

    def _view(self) -> dict[str, Any]:
        heads = self.transcripts.last_seqs()
        behind = {}
        for peer in self.peers:
            confirmed = {t: (self.follows.get((peer, t)) or Follow()).confirmed for t in heads}
            behind[peer] = sum(h - (confirmed[t] or 0) for t, h in heads.items())
        return {
            "role": "source" if self.term is not None else "buffer",
            "topics": len(heads),
            "turns": sum(heads.values()),
            "buffered_topics": len(self.buffer.heads()),
            "unconfirmed": behind if self.term is not None else {},
            "replayed_epoch": self.replayed,
            "loose": len(self.loose),
            "archive": None if self.archive is None else self.archive.view(),
        }
