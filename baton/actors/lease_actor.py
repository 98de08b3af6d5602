"""LeaseCoordinatorActor: drives FencedLease (baton.core.lease) over a LeaseStore and the
wire, and tells the rest of the node about every role change.

It turns Ticks, lease envelopes from peers and the store worker's answers into core
events, and carries out the effects: writes go to the LeaseStoreWorker (never done on
this thread), records go to every active peer as "lease" envelopes (LeaseTransport),
role changes go to the listeners and into the history, alarms and refused records are
logged and counted. A peer's bytes are checked (decoded strictly, signed by an active
member) before the core sees them; nothing a peer sends can stop this actor.

``release()`` (clean shutdown) stops acting at once, writes a signed tombstone and
sends it to the peers, so a standby takes over without waiting for the ttl.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from baton.actors.lease_worker import LeaseStoreWorker, StoreDone
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.build import THIS
from baton.core.clock import Clock
from baton.core.errors import BatonError, LeaseRefused, MalformedLease
from baton.core.lease import (
    Alarm,
    Broadcast,
    Dropped,
    Effect,
    Event,
    Fenced,
    InSyncWanted,
    LeaseChanged,
    LeaseConfig,
    LeaseState,
    LeaseTicked,
    LookUpAsked,
    Phase,
    ProtocolChecked,
    RecordSeen,
    SendTo,
    StopRequested,
    StoreAnswered,
    StoreFailed,
    TakeoverForced,
    WriteLease,
    YieldRequested,
    can_act,
    epoch,
    holder,
    in_sync_ok,
    may_name,
    step,
    takeover_at,
)
from baton.core.lease_queries import named_in_store
from baton.core.lease_record import LeaseRecord, check_record
from baton.core.lease_store import CasResult, Stored
from baton.core.registry import MachineEntry, Verify, unable_with
from baton.core.versions import Versions
from baton.holder.gate import LeaseGate, LeaseView
from baton.wire.envelope import Envelope
from baton.wire.lease_transport import LeaseTransport

log = logging.getLogger("baton.lease")

HISTORY_KEPT = 50
ALARMS_KEPT = 20

#: Called with every LeaseChanged (on the coordinator's thread; must only tell).
LeaseListener = Callable[[LeaseChanged], None]


@dataclass(frozen=True)
class GetLease:
    pass


@dataclass(frozen=True)
class Release:
    pass


@dataclass(frozen=True)
class IsReleased:
    pass


@dataclass(frozen=True)
class WantInSync:
    """Delivery on the holder wants the record to name these standbys in sync."""

    in_sync: tuple[str, ...]


@dataclass(frozen=True)
class Yield:
    """LeaseCoordinatorActor: stop acting now and release the lease to ``to`` alone."""

    to: str


@dataclass(frozen=True)
class ForceTakeover:
    """`wakeup --force`: take the expired lease over though not in sync."""


@dataclass(frozen=True)
class LookUp:
    """A wakeup asked a machine that does not hold: read the store now."""


@dataclass(frozen=True)
class FencedOut:
    """A fencing sink refused a side effect stamped ``epoch`` (it has seen ``highest``)."""

    epoch: int
    highest: int


class LeaseCoordinatorActor(pykka.ThreadingActor):
    def __init__(
        self,
        cfg: LeaseConfig,
        *,
        signing_public: bytes,
        worker: LeaseStoreWorker,
        clock: Clock,
        send: Callable[[Envelope], bool],
        verify: Verify,
        counters: Counters,
        listeners: Sequence[LeaseListener] = (),
        rng: Callable[[int], bytes] = os.urandom,
        gate: LeaseGate | None = None,
        sync_all_peers: bool = False,
        versions: Versions = THIS,
    ) -> None:
        super().__init__()
        # A node that answers no channel sends no reply markers: every active peer is
        # as much in sync as it can be, so the record names them all.
        self.sync_all_peers = sync_all_peers
        self.cfg = cfg
        self.me_public = signing_public
        self.worker = worker
        self.clock = clock
        self.transport = LeaseTransport(cfg.me, send, rng)
        self.verify = verify
        self.counters = counters
        self.listeners = list(listeners)
        self.gate = gate or LeaseGate()
        self.state = LeaseState()
        self.peers: tuple[MachineEntry, ...] = ()
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_KEPT)
        self.alarms: deque[dict[str, Any]] = deque(maxlen=ALARMS_KEPT)
        self.store_error: str | None = None
        self.last_renewal_ms: float | None = None
        self.versions = versions  # what this machine runs: may it hold in this mesh?

    # --- messages --------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case Tick(now_ms=now):
                self._feed(LeaseTicked(now, self.clock.wall_s()))
                self._sync_all(now)
            case StoreDone(attempt=attempt, result=result, error=error):
                now = self.clock.monotonic_ms()
                if result is not None:
                    self.store_error = None
                    result = self._checked(result)
                    self._feed(StoreAnswered(attempt, result, now))
                    if result.ok and attempt.kind != "release":
                        self.last_renewal_ms = now
                else:
                    self.store_error = error
                    self._feed(StoreFailed(attempt, error or "unknown", now))
                self._feed(LeaseTicked(self.clock.monotonic_ms(), self.clock.wall_s()))
            case EnvelopeReceived(envelope=env) if env.type == "lease":
                self._received(env)
            case MembersChanged(peers=peers):
                self.peers = peers
                why = unable_with(self.cfg.me, self.versions, peers)
                if why != self.state.unable:
                    if why is not None:
                        log.warning("lease: this machine may not hold: %s", why)
                    self._feed(ProtocolChecked(why))
            case GetLease():
                return self._view()
            case Release():
                self._feed(StopRequested(self.clock.monotonic_ms(), self.clock.wall_s()))
            case IsReleased():
                return self.state.inflight is None
            case FencedOut(epoch=fenced, highest=highest):
                self._feed(Fenced(fenced, highest, self.clock.monotonic_ms()))
            case Yield(to=to):
                self._feed(YieldRequested(to, self.clock.monotonic_ms(), self.clock.wall_s()))
            case WantInSync(in_sync=in_sync):
                self._feed(InSyncWanted(in_sync, self.clock.monotonic_ms(), self.clock.wall_s()))
            case ForceTakeover():
                self._feed(TakeoverForced(self.clock.monotonic_ms()))
            case LookUp():
                self._feed(LookUpAsked(self.clock.monotonic_ms(), self.clock.wall_s()))
            case _:
                raise TypeError(f"LeaseCoordinatorActor: unexpected message {message!r}")
        return None

    def _sync_all(self, now: float) -> None:
        s = self.state
        if not self.sync_all_peers or s.phase is not Phase.HOLDING or s.mine is None:
            return
        everyone = tuple(sorted(p.machine_id for p in self.peers))
        if everyone not in (s.mine.in_sync, s.want_in_sync):
            self._feed(InSyncWanted(everyone, now, self.clock.wall_s()))

    def _members(self) -> Mapping[str, bytes]:
        members = {p.machine_id: p.identity.signing_public for p in self.peers}
        members[self.cfg.me] = self.me_public
        return members

    def _received(self, env: Envelope) -> None:
        try:
            record, token = LeaseTransport.decode(env)
            check_record(record, self._members(), self.verify)
        except LeaseRefused as exc:
            self._drop(exc, env.sender)
            return
        self._feed(RecordSeen(record, self.clock.monotonic_ms(), token))
        if record.released:  # nobody holds: acquire now, not at the next tick
            self._feed(LeaseTicked(self.clock.monotonic_ms(), self.clock.wall_s()))

    def _checked(self, result: CasResult) -> CasResult:
        """What the store holds counts only if it is signed by an active member; anything
        else there (a forgery, a revoked holder's record) is garbage to the core."""
        record = result.current.record
        if result.ok or record is None:
            return result
        try:
            check_record(record, self._members(), self.verify)
        except LeaseRefused as exc:
            self._drop(exc, "the store")
            problem = f"the stored record does not verify: {exc.detail}"
            return CasResult(False, Stored(result.current.token, None, problem))
        return result

    def _drop(self, exc: BatonError, sender: str) -> None:
        self.counters.inc(f"lease.refused.{exc.code}")
        log.info("lease: refused a record from %s: %s", sender, exc.detail)

    # --- the core and its effects ----------------------------------------------------

    def _feed(self, event: Event) -> None:
        before = self.state
        try:
            self.state, effects = step(self.cfg, self.state, event)
        except MalformedLease as exc:  # a record of our own could not be made (our bug)
            self.counters.inc("lease.alarm.core_refused")
            log.error("lease: the core refused %r: %s", event, exc.detail)
            return
        s = self.state  # the gate first: a demotion closes it before anything else happens
        holding = s.mine if s.phase is Phase.HOLDING else None
        self.gate.publish(None if holding is None else holding.epoch, s.deadline)
        named = may_name(s) if holding else s.known.in_sync if s.known is not None else ()
        may = named_in_store(self.cfg, s)  # (a forced takeover is not "in sync")
        view = LeaseView(holder(s), epoch(s), takeover_at(self.cfg, s), named, may)
        self.gate.publish_view(view)
        for effect in effects:
            if isinstance(effect, LeaseChanged):
                self._changed(effect, before)
            else:
                self._carry_out(effect)

    def _carry_out(self, effect: Effect) -> None:
        match effect:
            case WriteLease(attempt=attempt):
                self.worker.submit(attempt, self.actor_ref)
            case Broadcast(record=record, token=token):
                for peer in self.peers:
                    self._send(peer.machine_id, record, token)
            case SendTo(machine_id=to, record=record, token=token):
                self._send(to, record, token)
            case Alarm(kind=kind, detail=detail):
                self.counters.inc(f"lease.alarm.{kind}")
                log.warning("lease: %s: %s", kind.replace("_", " "), detail)
                self.alarms.append({"kind": kind, "detail": detail, "at": self.clock.wall_s()})
            case Dropped(error=error):
                self._drop(error, "a peer")

    def _send(self, to: str, record: LeaseRecord, token: str | None) -> None:
        if self.transport.push(to, record, token):
            self.counters.inc("lease.sent")

    def _changed(self, change: LeaseChanged, before: LeaseState) -> None:
        """History times are this machine's CLOCK_BOOTTIME ms (``at_ms``), so histories
        of machines on one host can be laid side by side; ``acted_until_ms`` closes a
        stretch as holder: the deadline it had, or now if it stood down earlier."""
        self.counters.inc("lease.role_changes")
        now = self.clock.monotonic_ms()
        deadline_before = before.deadline
        self._took_over(change, before, now)
        entry: dict[str, Any] = {
            "role": change.phase.value,
            "holder": change.holder,
            "epoch": change.epoch,
            "reason": change.reason,
            "at": self.clock.wall_s(),
            "at_ms": now,
        }
        if change.phase is Phase.STANDBY and deadline_before is not None:
            entry["acted_until_ms"] = min(now, deadline_before)
        self.history.append(entry)
        log.info(
            "lease: %s, holder %s, epoch %d (%s)",
            change.phase.value,
            change.holder,
            change.epoch,
            change.reason,
        )
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:  # a listener's trouble must not end the lease
                log.exception("lease: a listener failed on %s", change)

    def _took_over(self, change: LeaseChanged, before: LeaseState, now: float) -> None:
        """A failover: this machine acquired a lease another machine held and did not
        release. Its duration, from the last renewal this machine saw to now, goes to the
        ``failover`` histogram. A released lease is a handoff or a clean stop, a forced
        one an operator's act: neither is counted. A machine started after the holder
        died counts from when it first saw the record, so its figure is short of the
        outage."""
        known = before.known
        if change.phase is not Phase.HOLDING or change.reason != "acquired":
            return
        if known is None or known.holder == self.cfg.me or before.seen_at is None:
            return
        if known.released:
            self.counters.inc("lease.took_released")
            return
        if now < before.forced_until:  # `wakeup --force`: as late as the operator was
            self.counters.inc("lease.forced_takeovers")
            return
        self.counters.inc("lease.failovers")
        self.counters.observe("failover", max(0.0, now - before.seen_at) / 1000.0)

    def _view(self) -> dict[str, Any]:
        now = self.clock.monotonic_ms()
        s = self.state
        acting = can_act(s, now)
        takeover = takeover_at(self.cfg, s)
        return {
            "role": "awake" if acting else "standby",
            "holder": holder(s),
            "epoch": epoch(s),
            "deadline_ms": round(s.deadline - now) if acting and s.deadline else None,
            "takeover_in_ms": None if acting or takeover is None else max(0, round(takeover - now)),
            "last_renewal_ms_ago": None
            if self.last_renewal_ms is None
            else round(now - self.last_renewal_ms),
            "store": {
                "where": self.worker.store.describe(),
                "reachable": s.store_ok,
                "error": self.store_error,
            },
            "ttl_ms": self.cfg.timing.ttl_ms,
            "in_sync": list(s.known.in_sync) if s.known is not None else [],
            "may_take_over": in_sync_ok(self.cfg, s, now) and s.unable is None,
            "unable": s.unable,
            "alarms": list(self.alarms),
            "history": list(self.history),
        }
