"""HandoffActor: both sides of a planned handoff on one machine (docs/DESIGN.md, "Live
tail and planned handoff"): the HandoffSentinel while it holds, the HandoffReceiver when
``baton wakeup`` runs here. The rules are baton.core.handoff; this actor feeds them the
wire's messages, the lease as the LeaseGate shows it and its collaborators' answers,
and carries out their effects:

- on the wire: HandoffWireTransport (request, begin, signed ack, abort);
- the LiveTailActor gives the heads, pulls a target up to them (CatchUpTo) and flushes
  a target until it confirms every turn (ConfirmTo);
- the DeliveryActor stops ingress and drains (StopIngress), or resumes (ResumeIngress);
- the LeaseCoordinatorActor yields (Yield) to the target alone.

Answers come back as messages tagged with the handoff id, so an answer for a handoff
that was called off never moves a later one. A wakeup's answer is set on the Future the
HTTP view waits on. A peer's bytes are checked (strict opening, the ack's signature
against the active members' keys); what is refused is logged and counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from baton.actors.delivery_messages import ResumeIngress, StopIngress
from baton.actors.handoff_messages import GetHandoff, Wakeup
from baton.actors.lease_actor import ForceTakeover, LookUp, Yield
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.tail_messages import CatchUpTo, ConfirmTo, TailHeads
from baton.adapters.metrics import Counters
from baton.build import THIS
from baton.core import handoff as h
from baton.core import handoff_receiver as hr
from baton.core import handoff_sentinel as hs
from baton.core.clock import Clock
from baton.core.errors import HandoffRefused
from baton.core.lease_types import LeaseChanged
from baton.core.registry import MachineEntry, Verify, mesh_protocol_of, unable_with
from baton.core.versions import Versions, cannot_speak
from baton.holder.gate import LeaseGate
from baton.wire.envelope import Envelope
from baton.wire.handoff_transport import HandoffWireTransport, ack_signed, handoff_id_of, open_heads

log = logging.getLogger("baton.handoff")

OUTCOMES_KEPT = 20


@dataclass(frozen=True)
class _HeadsFor:
    handoff_id: str
    target: str
    heads: h.Heads


@dataclass(frozen=True)
class _Answer:
    """A collaborator's answer for handoff ``handoff_id``: "drained", "confirmed" or
    "caught_up"."""

    handoff_id: str
    what: str


def _told(ref: pykka.ActorRef[Any] | None, message: object) -> None:
    if ref is not None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)


class HandoffActor(pykka.ThreadingActor):
    def __init__(
        self,
        me: str,
        *,
        timing: hr.ReceiverTiming,
        transport: HandoffWireTransport,
        gate: LeaseGate,
        lease: pykka.ActorRef[Any] | None,
        tail: pykka.ActorRef[Any] | None,
        delivery: pykka.ActorRef[Any] | None,
        position: Callable[[], int],
        verify: Verify,
        clock: Clock,
        counters: Counters,
        rng: Callable[[int], bytes] = os.urandom,
        versions: Versions = THIS,
    ) -> None:
        super().__init__()
        self.me = me
        self.versions = versions  # what this machine runs (no handoff onto what cannot)
        self.ack_timeout_ms = timing.ack_timeout_ms
        self.timing = timing
        self.transport = transport
        self.gate = gate
        self.lease, self.tail, self.delivery = lease, tail, delivery
        self.position = position
        self.verify = verify
        self.clock = clock
        self.counters = counters
        self.rng = rng
        self.sentinel = hs.HandoffSentinel()
        self.receiver = hr.HandoffReceiver()
        self.peers: dict[str, MachineEntry] = {}
        self.answer: Any = None  # the Future of the wakeup in progress
        self.syncing: tuple[Any, float] | None = None  # a wakeup waiting to be in sync
        # a handoff asked of this holder, waiting for its target to be in sync
        self.requested: tuple[str, str, float] | None = None
        self.asked_at = 0.0
        self.outcomes: deque[dict[str, Any]] = deque(maxlen=OUTCOMES_KEPT)

    # --- messages --------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        now = self.clock.monotonic_ms()
        match message:
            case Tick(now_ms=now):
                self._sentinel(h.HandoffTicked(now, self.gate.current(now)))
                self._receiver(h.HandoffTicked(now, None))
                self._synced(now)
                self._requested(now)
            case Wakeup(force=force, answer=answer):
                self._wakeup(force, answer, now)
            case EnvelopeReceived(envelope=env):
                try:
                    self._envelope(env, now)
                except HandoffRefused as exc:
                    self.counters.inc("handoff.refused.malformed")
                    log.warning("handoff: %s from %s refused: %s", env.type, env.sender, exc.detail)
            case _HeadsFor(handoff_id=hid, target=target, heads=heads):
                epoch = self.gate.current(now)
                self._sentinel(hs.BeginAsked(hid, target, epoch, heads, self.position(), now))
            case _Answer(handoff_id=hid, what="caught_up"):
                self._receiver(hr.CaughtUp(hid, now))
            case _Answer(handoff_id=hid, what="confirmed") if hid == self.sentinel.handoff_id:
                target = self.sentinel.target
                # the lease must not go to a target that left the in-sync set while the
                # replies drained (it did not ack a marker in time), nor to one the
                # members now say cannot speak the mesh's protocol
                why = self._cannot_speak(target) if target in self.peers else None
                if target not in self.gate.view().in_sync:
                    self.counters.inc("handoff.holder.not_in_sync")
                    why = f"{target} fell out of sync during the handoff"
                elif why is not None:
                    self.counters.inc("handoff.holder.cannot_speak")
                if why is not None:
                    self.transport.abort(target, hid, why)
                    self._sentinel(h.AbortArrived(hid, target, why))
                else:
                    self._sentinel(hs.Confirmed(now))
            case _Answer(handoff_id=hid, what="drained") if hid == self.sentinel.handoff_id:
                self._sentinel(hs.Drained(now))
            case _Answer():
                self.counters.inc("handoff.stale_answer")
            case LeaseChanged(holder=holder, epoch=epoch):
                self._receiver(hr.LeaseSeen(holder, epoch, holder == self.me, now))
            case MembersChanged(peers=peers):
                self.peers = {p.machine_id: p for p in peers}
            case GetHandoff():
                return self._view()
            case _:
                raise TypeError(f"HandoffActor: unexpected message {message!r}")
        return None

    def _wakeup(self, force: bool, answer: Any, now: float) -> None:
        if self.lease is None:
            detail = "this mesh has no lease store: the awake machine does not move"
            answer.set_result({"ok": False, "outcome": "refused", "detail": detail})
            return
        unable = unable_with(self.me, self.versions, self.peers.values())
        if unable is not None:  # the holder would refuse it too: say so at once
            answer.set_result({"ok": False, "outcome": "refused", "detail": unable})
            return
        if self.answer is not None and self.receiver.phase is not hr.RPhase.IDLE:
            detail = f"a wakeup is in progress ({self.receiver.phase.value})"
            answer.set_result({"ok": False, "outcome": "busy", "detail": detail})
            return
        view = self.gate.view()
        holding = self.gate.current(now) is not None
        behind = view.holder not in (None, self.me) and self.me not in view.in_sync
        if behind and not force and not holding and self.syncing is None:
            # the holder hands over only to a standby in sync: wait (an ack timeout at
            # most) for this one to catch up, then ask (the holder says why if still not)
            self.syncing = (answer, now + self.timing.ack_timeout_ms)
            return
        expires_in = 0.0 if view.takeover_at is None else max(0.0, view.takeover_at - now)
        self.answer, self.asked_at = answer, now
        holder = None if view.holder == self.me else view.holder
        hid = self.rng(12).hex()
        self._receiver(hr.WakeupAsked(hid, force, holding, holder, view.epoch, expires_in, now))

    def _envelope(self, env: Envelope, now: float) -> None:
        hid = handoff_id_of(env)
        if env.sender not in self.peers:
            raise HandoffRefused(f"{env.sender} is not an active member")
        match env.type:
            case "handoff_request" if (why := self._cannot_speak(env.sender)) is not None:
                self.counters.inc("handoff.holder.cannot_speak")
                self.transport.abort(env.sender, hid, why)
                self._outcome("holder", "refused", why)
            case "handoff_request":
                # the lease goes to the target alone: it must hold every marker. One
                # catching up gets half an ack timeout (its own wait is a whole one).
                self.requested = (hid, env.sender, now + self.ack_timeout_ms / 2)
                self._requested(now)
            case "handoff_begin":
                heads, position = open_heads(env)
                view = self.gate.view()
                event = hr.BeginArrived(
                    hid, env.sender, env.epoch, heads, position, view.holder, view.epoch
                )
                self._receiver(event)
            case "handoff_ack":
                members = {p: e.identity.signing_public for p, e in self.peers.items()}
                signed = ack_signed(env, members, self.verify)
                heads, position = open_heads(env) if signed else ((), -1)
                ack = hs.AckArrived(hid, env.sender, env.epoch, heads, position, signed, now)
                self._sentinel(ack)
            case "handoff_abort":
                reason = str(env.body["reason"])
                self._sentinel(h.AbortArrived(hid, env.sender, reason))
                self._receiver(h.AbortArrived(hid, env.sender, reason))

    def _signal(self, handoff_id: str, what: str) -> Callable[[], None]:
        """A reply callable for a collaborator: it tells this actor _Answer(id, what)."""
        ref = self.actor_ref
        return lambda: _told(ref, _Answer(handoff_id, what))

    # --- the two state machines and their effects ------------------------------------

    def _sentinel(self, event: hs.SentinelEvent) -> None:
        self.sentinel, effects = hs.sentinel_step(self.sentinel, event, self.ack_timeout_ms)
        hid = self.sentinel.handoff_id
        for effect in effects:
            match effect:
                case hs.SendBegin(to=to, handoff_id=i, epoch=e, heads=heads, position=p):
                    self.transport.begin(to, i, e, heads, p)
                case h.SendAbort(to=to, handoff_id=i, reason=reason):
                    self.transport.abort(to, i, reason)
                case hs.StopIngress():
                    drained = self._signal(hid, "drained")
                    if self.delivery is None:
                        drained()
                    else:
                        _told(self.delivery, StopIngress(drained))
                case hs.ResumeIngress():
                    _told(self.delivery, ResumeIngress())
                case hs.FlushTo(to=to):
                    confirmed = self._signal(hid, "confirmed")
                    if self.tail is None:
                        confirmed()
                    else:
                        _told(self.tail, ConfirmTo(to, self.sentinel.deadline, confirmed))
                case hs.YieldTo(to=to):
                    _told(self.lease, Yield(to))
                case h.Outcome(kind=kind, detail=detail):
                    self._outcome("holder", kind, detail)

    def _receiver(self, event: hr.ReceiverEvent) -> None:
        self.receiver, effects = hr.receiver_step(self.receiver, event, self.timing)
        r = self.receiver
        for effect in effects:
            match effect:
                case hr.SendRequest(to=to, handoff_id=hid):
                    self.transport.request(to, hid)
                case hr.LookUp():
                    _told(self.lease, LookUp())
                case hr.CatchUp(holder=holder, heads=heads):
                    caught_up = self._signal(r.handoff_id, "caught_up")
                    if self.tail is None:
                        caught_up()
                    else:
                        _told(self.tail, CatchUpTo(holder, heads, r.deadline, caught_up))
                case hr.SendAck(to=to, handoff_id=hid, epoch=e, heads=heads, position=p):
                    self.transport.ack(to, hid, e, heads, p)
                case h.SendAbort(to=to, handoff_id=hid, reason=reason):
                    self.transport.abort(to, hid, reason)
                case hr.Done():
                    self._done(effect)
                case h.Outcome(kind=kind, detail=detail):
                    if kind == "forcing":
                        detail = self._forcing(detail)
                    self._outcome("target", kind, detail)

    def _cannot_speak(self, target: str) -> str | None:
        """Why ``target`` may not take the lease: it cannot speak the protocol the mesh
        runs at, as it announced what it speaks (None: it can)."""
        entry = self.peers[target]
        mesh = mesh_protocol_of(self.me, self.versions, self.peers.values())
        return cannot_speak(entry.versions, mesh, entry.nickname)

    def _requested(self, now: float) -> None:
        """Begin the handoff asked for once its target is in sync; abort at the deadline."""
        if self.requested is None:
            return
        hid, target, deadline = self.requested
        if self.gate.current(now) is None:
            # not the holder (the asker's view is stale): say so at once, so it looks
            # the lease up and asks the holder, not wait here on a set that is not ours
            self.requested = None
            self._sentinel(hs.BeginAsked(hid, target, None, (), 0, now))
            return
        if target not in self.gate.view().in_sync:
            if now >= deadline:
                self.requested = None
                self.counters.inc("handoff.holder.not_in_sync")
                why = f"{target} is not in sync yet (it is catching up); try again"
                self.transport.abort(target, hid, why)
            return
        self.requested = None
        ref = self.actor_ref

        def heads_for(heads: h.Heads) -> None:
            _told(ref, _HeadsFor(hid, target, heads))

        if self.tail is None:
            heads_for(())
        else:
            _told(self.tail, TailHeads(heads_for))

    def _synced(self, now: float) -> None:
        """A wakeup waiting for this machine to be in sync goes on once it is (or at
        its deadline)."""
        if self.syncing is None:
            return
        answer, deadline = self.syncing
        if self.me in self.gate.view().in_sync or now >= deadline:
            self._wakeup(False, answer, now)
            self.syncing = None

    def _forcing(self, detail: str) -> str:
        """`wakeup --force`: the lease may take over though this machine is out of sync;
        say what that may cost (each unfinished message it resumes is counted by
        delivery as ``delivery.out_of_sync_resume``)."""
        _told(self.lease, ForceTakeover())
        if self.me in self.gate.view().in_sync:
            return detail
        self.counters.inc("handoff.forced_out_of_sync")
        return (
            f"{detail}; this machine is NOT in sync with the holder's replies: it may "
            "answer again messages the others answered since it fell behind (each such "
            "message is reported as an out_of_sync_resume alarm)"
        )

    def _done(self, done: hr.Done) -> None:
        took = self.clock.monotonic_ms() - self.asked_at
        result = {
            "ok": done.ok,
            "outcome": done.outcome,
            "detail": done.detail,
            "epoch": done.epoch or None,
            "took_ms": round(took, 1),
        }
        self._outcome("wakeup", done.outcome, done.detail)
        if done.ok and done.outcome == "handed_over":
            self.counters.observe("handoff", took / 1000.0)
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_result(result)

    def _outcome(self, side: str, kind: str, detail: str) -> None:
        self.counters.inc(f"handoff.{side}.{kind}")
        level = logging.INFO if kind not in ("aborted", "refused", "timeout") else logging.WARNING
        log.log(level, "handoff (%s): %s: %s", side, kind, detail)
        if kind != "ignored":
            self.outcomes.append(
                {"side": side, "kind": kind, "detail": detail, "at": self.clock.wall_s()}
            )

    def _view(self) -> dict[str, Any]:
        return {
            "sentinel": self.sentinel.phase.value,
            "receiver": self.receiver.phase.value,
            "target": self.sentinel.target or None,
            "recent": list(self.outcomes),
        }
