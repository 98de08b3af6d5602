"""Planned handoff (sans-IO): the HandoffSentinel on the holder and the HandoffReceiver on
the machine that should become awake (DESIGN.md section 6, "Planned handoff").

Theory of operation. ``baton wakeup`` on the target T asks the holder H to begin. H
(sentinel) answers with begin: its epoch, its transcript heads (per topic the last seq
and ledger key) and its ledger position (the channel offset it has confirmed). T
(receiver) takes begin only from the machine it knows holds the lease, at the epoch it
knows, for the wakeup it asked; it catches up its live-tail buffer to those heads
(pulling what it lacks) and then acks with a signed echo of begin. H takes the ack only
if it is signed by T and echoes begin exactly; it then stops ingress, drains the
replies in flight, flushes the live tail until T confirms every turn, and yields: it
stops acting and releases the lease to T alone, which acquires epoch + 1 by CAS. Any
refusal, mismatch or timeout on the way aborts: H resumes ingress and stays awake, and
T's wakeup says why. ``wakeup --force`` takes over without H only where failover would:
when the lease has expired in T's clock frame.

Both sides are state machines: ``sentinel_step`` and ``receiver_step`` take a state and
an event and return the new state and the effects for the HandoffActor to carry out.
Events a side does not expect in its phase change nothing (they are counted by the
actor as ignored); nothing here raises on a peer's input.

Invariants:
- The sentinel yields (YieldTo) only from FLUSHING, which it reaches only through a
  verified ack of its own begin, then Drained, then Confirmed, all before its deadline
  and while it still holds begin's epoch. Every way out of DRAINING or FLUSHING other
  than yielding resumes ingress.
- The receiver acks only the begin of the wakeup it asked, from the holder it knows at
  the epoch it knows, and only after CaughtUp for that begin.
- Each wakeup ends in exactly one Done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

#: A machine's transcript heads: (topic, last seq, its ledger key), sorted by topic.
Heads = tuple[tuple[str, int, str], ...]


def heads_of(mapping: dict[str, tuple[int, str]]) -> Heads:
    return tuple(sorted((topic, seq, key) for topic, (seq, key) in mapping.items()))


# --- the sentinel (holder) -----------------------------------------------------------


class SPhase(StrEnum):
    IDLE = "idle"
    BEGUN = "begun"  # begin sent; waiting for the ack
    DRAINING = "draining"  # ack verified; ingress stopped; replies in flight finishing
    FLUSHING = "flushing"  # drained; the live tail goes out until the target confirms


@dataclass(frozen=True)
class Sentinel:
    phase: SPhase = SPhase.IDLE
    handoff_id: str = ""
    target: str = ""
    epoch: int = 0
    heads: Heads = ()
    position: int = 0
    deadline: float = 0.0


@dataclass(frozen=True)
class BeginAsked:
    """``target`` asks to become awake. ``epoch`` is the one this machine holds now
    (None: it does not hold); heads and position are its own, now."""

    handoff_id: str
    target: str
    epoch: int | None
    heads: Heads
    position: int
    now: float


@dataclass(frozen=True)
class AckArrived:
    handoff_id: str
    sender: str
    epoch: int
    heads: Heads
    position: int
    signed: bool  # the signature verifies with the sender's key, an active member
    now: float


@dataclass(frozen=True)
class Drained:
    now: float


@dataclass(frozen=True)
class Confirmed:
    now: float


@dataclass(frozen=True)
class AbortArrived:
    handoff_id: str
    sender: str
    reason: str


@dataclass(frozen=True)
class Ticked:
    now: float
    epoch: int | None  # the epoch held now (None: none)


SentinelEvent = BeginAsked | AckArrived | Drained | Confirmed | AbortArrived | Ticked


@dataclass(frozen=True)
class SendBegin:
    to: str
    handoff_id: str
    epoch: int
    heads: Heads
    position: int


@dataclass(frozen=True)
class SendAbort:
    to: str
    handoff_id: str
    reason: str


@dataclass(frozen=True)
class StopIngress:
    pass


@dataclass(frozen=True)
class ResumeIngress:
    pass


@dataclass(frozen=True)
class FlushTo:
    to: str


@dataclass(frozen=True)
class YieldTo:
    to: str
    epoch: int


@dataclass(frozen=True)
class Outcome:
    """For the log, the counters and status: what became of a handoff on this side."""

    kind: str  # "begun", "acked", "yielded", "aborted", "refused", "ignored"
    detail: str


SentinelEffect = SendBegin | SendAbort | StopIngress | ResumeIngress | FlushTo | YieldTo | Outcome


def sentinel_step(
    s: Sentinel, event: SentinelEvent, ack_timeout_ms: float
) -> tuple[Sentinel, list[SentinelEffect]]:
    match event:
        case BeginAsked():
            return _asked(s, event, ack_timeout_ms)
        case AckArrived():
            return _acked(s, event, ack_timeout_ms)
        case Drained() if s.phase is SPhase.DRAINING:
            return replace(s, phase=SPhase.FLUSHING), [FlushTo(s.target)]
        case Confirmed() if s.phase is SPhase.FLUSHING:
            detail = f"to {s.target} at epoch {s.epoch}"
            return Sentinel(), [YieldTo(s.target, s.epoch), Outcome("yielded", detail)]
        case AbortArrived(handoff_id=hid, sender=sender, reason=reason):
            if s.phase is SPhase.IDLE or (hid, sender) != (s.handoff_id, s.target):
                return s, [Outcome("ignored", f"an abort from {sender} for no handoff here")]
            return _abort(s, f"{sender} gave up: {reason}", tell=False)
        case Ticked(now=now, epoch=epoch):
            if s.phase is SPhase.IDLE:
                return s, []
            if epoch != s.epoch:
                return _abort(s, "this machine no longer holds the lease")
            if now >= s.deadline:
                return _abort(s, _TIMEOUTS[s.phase].format(target=s.target))
            return s, []
    return s, [Outcome("ignored", f"{type(event).__name__} while {s.phase.value}")]


#: Why a sentinel gave up, by the phase it was in.
_TIMEOUTS = {
    SPhase.BEGUN: "no ack from {target} within the ack timeout",
    SPhase.DRAINING: "the replies in flight did not drain in time",
    SPhase.FLUSHING: "{target} did not confirm the live tail in time",
}

#: Why a machine that does not hold refuses a request: the asker's view was stale (the
#: lease moved on and word of it has not reached the asker yet), so it looks again.
NOT_AWAKE = "this machine is not awake"
LOOK_AGAIN_MS = 500.0  # the store still names the machine asked: ask it again after this

#: The sentinel waits a little longer for the ack than the target has to send it, so a
#: target that gives up says why first.
ACK_GRACE = 1.25


def _asked(
    s: Sentinel, e: BeginAsked, ack_timeout_ms: float
) -> tuple[Sentinel, list[SentinelEffect]]:
    if s.phase is not SPhase.IDLE:
        if (e.handoff_id, e.target) == (s.handoff_id, s.target) and s.phase is SPhase.BEGUN:
            return s, [SendBegin(s.target, s.handoff_id, s.epoch, s.heads, s.position)]
        reason = f"a handoff to {s.target} is in progress"
        return s, [SendAbort(e.target, e.handoff_id, reason), Outcome("refused", reason)]
    if e.epoch is None:
        reason = NOT_AWAKE
        return s, [SendAbort(e.target, e.handoff_id, reason), Outcome("refused", reason)]
    deadline = e.now + ack_timeout_ms * ACK_GRACE
    s = Sentinel(SPhase.BEGUN, e.handoff_id, e.target, e.epoch, e.heads, e.position, deadline)
    begin = SendBegin(s.target, s.handoff_id, s.epoch, s.heads, s.position)
    return s, [begin, Outcome("begun", f"to {e.target} at epoch {e.epoch}")]


def _acked(
    s: Sentinel, e: AckArrived, ack_timeout_ms: float
) -> tuple[Sentinel, list[SentinelEffect]]:
    if s.phase is not SPhase.BEGUN or (e.handoff_id, e.sender) != (s.handoff_id, s.target):
        return s, [Outcome("ignored", f"an ack from {e.sender} for no handoff waiting on it")]
    if not e.signed:
        return _abort(s, f"the ack from {e.sender} is not signed by it (forged)")
    mismatch = [
        name
        for name, theirs, mine in (
            ("epoch", e.epoch, s.epoch),
            ("heads", e.heads, s.heads),
            ("position", e.position, s.position),
        )
        if theirs != mine
    ]
    if mismatch:
        return _abort(s, f"the ack does not match begin: {', '.join(mismatch)} differ")
    # the drain and the final flush get another ack timeout between them
    s = replace(s, phase=SPhase.DRAINING, deadline=e.now + ack_timeout_ms)
    return s, [StopIngress(), Outcome("acked", f"by {e.sender}")]


def _abort(s: Sentinel, reason: str, tell: bool = True) -> tuple[Sentinel, list[SentinelEffect]]:
    effects: list[SentinelEffect] = []
    if s.phase in (SPhase.DRAINING, SPhase.FLUSHING):
        effects.append(ResumeIngress())
    if tell:
        effects.append(SendAbort(s.target, s.handoff_id, reason))
    return Sentinel(), [*effects, Outcome("aborted", reason)]


# --- the receiver (the machine that should become awake) -----------------------------


class RPhase(StrEnum):
    IDLE = "idle"
    REQUESTED = "requested"  # asked the holder to begin
    LOOKING = "looking"  # the machine asked does not hold: learning who does
    CATCHING_UP = "catching_up"  # begin taken; the live tail is pulled up to its heads
    ACKED = "acked"  # ack sent; waiting to hold the lease
    FORCING = "forcing"  # --force: waiting for this machine's own takeover


@dataclass(frozen=True)
class Receiver:
    phase: RPhase = RPhase.IDLE
    handoff_id: str = ""
    holder: str = ""
    epoch: int = 0
    heads: Heads = ()
    position: int = 0
    deadline: float = 0.0
    ask_again_at: float = 0.0  # LOOKING: when to ask the same machine again (0: unset)


@dataclass(frozen=True)
class WakeupAsked:
    """``baton wakeup`` here. ``holder``/``epoch``: the lease as this machine knows it;
    ``expires_in``: ms until the lease has surely expired in this machine's frame
    (0: expired already)."""

    handoff_id: str
    force: bool
    holding: bool
    holder: str | None
    epoch: int
    expires_in: float
    now: float


@dataclass(frozen=True)
class BeginArrived:
    handoff_id: str
    sender: str
    epoch: int
    heads: Heads
    position: int
    holder: str | None  # the lease as this machine knows it now
    holder_epoch: int


@dataclass(frozen=True)
class CaughtUp:
    handoff_id: str
    now: float


@dataclass(frozen=True)
class LeaseSeen:
    """The lease changed: ``holder`` holds ``epoch`` (this machine if ``mine``)."""

    holder: str | None
    epoch: int
    mine: bool
    now: float


ReceiverEvent = WakeupAsked | BeginArrived | CaughtUp | AbortArrived | LeaseSeen | Ticked


@dataclass(frozen=True)
class SendRequest:
    to: str
    handoff_id: str


@dataclass(frozen=True)
class CatchUp:
    holder: str
    heads: Heads


@dataclass(frozen=True)
class SendAck:
    to: str
    handoff_id: str
    epoch: int
    heads: Heads
    position: int


@dataclass(frozen=True)
class Done:
    """The wakeup's answer."""

    ok: bool
    outcome: str  # already_awake, handed_over, took_over, refused, timeout, busy
    detail: str
    epoch: int = 0


@dataclass(frozen=True)
class LookUp:
    """Read the lease store now: who holds the lease? (The answer comes as LeaseSeen.)"""


ReceiverEffect = SendRequest | CatchUp | SendAck | SendAbort | LookUp | Done | Outcome


@dataclass(frozen=True)
class ReceiverTiming:
    ack_timeout_ms: float
    ttl_ms: float

    @property
    def yield_wait_ms(self) -> float:
        """After the ack: the holder drains and flushes (an ack timeout), releases and
        this machine acquires by CAS (store round trips): a ttl is ample."""
        return self.ack_timeout_ms + self.ttl_ms


def receiver_step(
    r: Receiver, event: ReceiverEvent, t: ReceiverTiming
) -> tuple[Receiver, list[ReceiverEffect]]:
    match event:
        case WakeupAsked():
            return _wakeup(r, event, t)
        case BeginArrived():
            return _begin(r, event)
        case CaughtUp(handoff_id=hid, now=now) if r.phase is RPhase.CATCHING_UP:
            if hid != r.handoff_id:
                return r, []
            ack = SendAck(r.holder, r.handoff_id, r.epoch, r.heads, r.position)
            r = replace(r, phase=RPhase.ACKED, deadline=now + t.yield_wait_ms)
            return r, [ack, Outcome("acked", f"caught up with {r.holder}")]
        case AbortArrived(handoff_id=hid, sender=sender, reason=reason):
            if r.phase is RPhase.IDLE or (hid, sender) != (r.handoff_id, r.holder):
                return r, [Outcome("ignored", f"an abort from {sender} for no wakeup here")]
            if r.phase is RPhase.REQUESTED and reason == NOT_AWAKE:
                # what this machine knew was stale: learn who holds, then ask them
                detail = f"{sender} does not hold the lease; looking up who does"
                return replace(r, phase=RPhase.LOOKING), [LookUp(), Outcome("looking", detail)]
            return Receiver(), [Done(False, "refused", f"{sender} refused: {reason}")]
        case LeaseSeen():
            return _lease_seen(r, event, t)
        case Ticked(now=now) if r.phase is not RPhase.IDLE and now >= r.deadline:
            return _timed_out(r)
        case Ticked(now=now) if r.phase is RPhase.LOOKING:
            if not r.ask_again_at:
                return replace(r, ask_again_at=now + LOOK_AGAIN_MS), []
            if now >= r.ask_again_at:
                # the store still says it holds (its gate was closed a moment: a renewal
                # late, just acquired): ask it again
                r = replace(r, phase=RPhase.REQUESTED, ask_again_at=0.0)
                return r, [SendRequest(r.holder, r.handoff_id)]
    return r, []


def _wakeup(
    r: Receiver, e: WakeupAsked, t: ReceiverTiming
) -> tuple[Receiver, list[ReceiverEffect]]:
    if r.phase is not RPhase.IDLE:
        return r, [Done(False, "busy", f"a wakeup is in progress ({r.phase.value})")]
    if e.holding:
        return r, [Done(True, "already_awake", "this machine is awake already", e.epoch)]
    if e.force:
        if e.holder is not None and e.expires_in > 0:
            detail = (
                f"the lease of {e.holder} (epoch {e.epoch}) is still valid for "
                f"{e.expires_in / 1000:.1f} s in this machine's clock frame; --force takes "
                "over only an expired lease (without --force, the holder hands over)"
            )
            return r, [Done(False, "refused", detail)]
        deadline = e.now + t.ttl_ms
        return Receiver(RPhase.FORCING, e.handoff_id, e.holder or "", e.epoch, deadline=deadline), [
            Outcome("forcing", f"the lease of {e.holder} has expired here")
        ]
    if e.holder is None:
        detail = "nobody holds the lease (a standby takes over by itself; or use --force)"
        return r, [Done(False, "refused", detail)]
    deadline = e.now + t.ack_timeout_ms
    r = Receiver(RPhase.REQUESTED, e.handoff_id, e.holder, e.epoch, deadline=deadline)
    return r, [SendRequest(e.holder, e.handoff_id)]


def _begin(r: Receiver, e: BeginArrived) -> tuple[Receiver, list[ReceiverEffect]]:
    problem = None
    if r.phase is not RPhase.REQUESTED or e.handoff_id != r.handoff_id:
        problem = "no wakeup here asked for it"
    elif e.sender != e.holder:
        problem = f"{e.sender} does not hold the lease ({e.holder} does)"
    elif e.epoch != e.holder_epoch:
        problem = f"epoch {e.epoch} is not the lease's ({e.holder_epoch})"
    if problem is not None:
        return r, [Outcome("refused", f"a begin from {e.sender}: {problem}")]
    r = replace(
        r,
        phase=RPhase.CATCHING_UP,
        holder=e.sender,
        epoch=e.epoch,
        heads=e.heads,
        position=e.position,
    )
    return r, [CatchUp(e.sender, e.heads), Outcome("begun", f"by {e.sender} at epoch {e.epoch}")]


def _lease_seen(
    r: Receiver, e: LeaseSeen, t: ReceiverTiming
) -> tuple[Receiver, list[ReceiverEffect]]:
    if r.phase is RPhase.IDLE:
        return r, []
    if e.mine:
        outcome = "took_over" if r.phase is RPhase.FORCING else "handed_over"
        return Receiver(), [Done(True, outcome, f"awake at epoch {e.epoch}", e.epoch)]
    moved = e.holder is not None and (e.holder, e.epoch) != (r.holder, r.epoch)
    if moved and e.holder is not None and r.phase in (RPhase.REQUESTED, RPhase.LOOKING):
        # nothing began yet: ask the machine that holds now (the one asked before
        # refuses, or its abort is ignored as for another wakeup)
        deadline = max(r.deadline, e.now + t.ack_timeout_ms)  # a whole ack timeout for it
        r = replace(
            r, phase=RPhase.REQUESTED, holder=e.holder, epoch=e.epoch, deadline=deadline,
            ask_again_at=0.0,
        )  # fmt: skip
        asked = f"the lease is {e.holder}'s (epoch {e.epoch}): asking it"
        return r, [SendRequest(e.holder, r.handoff_id), Outcome("asked", asked)]
    if moved:
        detail = f"the lease moved to {e.holder} (epoch {e.epoch})"
        return Receiver(), [Done(False, "refused", detail)]
    return r, []


#: Refusals a new attempt cannot change: an attack on the ack, or no lease to move.
FINAL_REFUSALS = ("forged", "does not match", "no lease store", "nobody holds the lease")


def may_retry(outcome: str, detail: str) -> bool:
    """Would a new attempt of a failed wakeup (not ``--force``) likely succeed? A target
    still catching up, a handoff or wakeup already in progress, a lease that moved, a
    phase that ran out of time on a busy host: yes (each left the old holder awake).
    A forged or mismatching ack, or a mesh without a lease to move: no."""
    if outcome not in ("refused", "timeout", "busy"):
        return False
    return not any(final in detail for final in FINAL_REFUSALS)


def _timed_out(r: Receiver) -> tuple[Receiver, list[ReceiverEffect]]:
    why = {
        RPhase.REQUESTED: f"no begin from the holder {r.holder} within the ack timeout",
        RPhase.LOOKING: f"{r.holder} does not hold the lease and no other holder was seen",
        RPhase.CATCHING_UP: "could not catch up with the live tail within the ack timeout",
        RPhase.ACKED: f"{r.holder} took the ack but did not yield in time",
        RPhase.FORCING: "could not take over the expired lease in time",
    }[r.phase]
    effects: list[ReceiverEffect] = []
    if r.phase in (RPhase.REQUESTED, RPhase.CATCHING_UP, RPhase.ACKED):
        effects.append(SendAbort(r.holder, r.handoff_id, why))
    return Receiver(), [*effects, Done(False, "timeout", why)]
