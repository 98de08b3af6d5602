"""The HandoffReceiver (sans-IO): the side of a planned handoff on the machine that
should become awake, where ``baton wakeup`` runs (the theory of operation is
``core.handoff``'s).

The table below is the whole machine: (phase, event type) -> rule. An event with no
rule in the phase it arrives in changes nothing.

Invariants:
- The receiver acks only the begin of the wakeup it asked, from the holder it knows at
  the epoch it knows, and only after CaughtUp for that begin.
- Each wakeup ends in exactly one Done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, get_args

from baton.core.errors import IllegalEvent
from baton.core.handoff import (
    NOT_AWAKE,
    AbortArrived,
    HandoffTicked,
    Heads,
    Outcome,
    SendAbort,
)

LOOK_AGAIN_MS = 500.0  # the store still names the machine asked: ask it again after this


class RPhase(StrEnum):
    IDLE = "idle"
    REQUESTED = "requested"  # asked the holder to begin
    LOOKING = "looking"  # the machine asked does not hold: learning who does
    CATCHING_UP = "catching_up"  # begin taken; the live tail is pulled up to its heads
    ACKED = "acked"  # ack sent; waiting to hold the lease
    FORCING = "forcing"  # --force: waiting for this machine's own takeover


@dataclass(frozen=True)
class HandoffReceiver:
    phase: RPhase = RPhase.IDLE
    handoff_id: str = ""
    holder: str = ""
    epoch: int = 0
    heads: Heads = ()
    position: int = 0
    deadline: float = 0.0
    ask_again_at: float = 0.0  # LOOKING: when to ask the same machine again (0: unset)


@dataclass(frozen=True)
class ReceiverTiming:
    ack_timeout_ms: float
    ttl_ms: float

    @property
    def yield_wait_ms(self) -> float:
        """After the ack: the holder drains and flushes (an ack timeout), releases and
        this machine acquires by CAS (store round trips): a ttl is ample."""
        return self.ack_timeout_ms + self.ttl_ms


# --- events ----------------------------------------------------------------------------


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


ReceiverEvent = WakeupAsked | BeginArrived | CaughtUp | AbortArrived | LeaseSeen | HandoffTicked


# --- effects ---------------------------------------------------------------------------


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
Step = tuple[HandoffReceiver, list[ReceiverEffect]]


# --- the rules -------------------------------------------------------------------------


def _wakeup(r: HandoffReceiver, e: WakeupAsked, t: ReceiverTiming) -> Step:
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
        forcing = HandoffReceiver(
            RPhase.FORCING, e.handoff_id, e.holder or "", e.epoch, deadline=e.now + t.ttl_ms
        )
        return forcing, [Outcome("forcing", f"the lease of {e.holder} has expired here")]
    if e.holder is None:
        detail = "nobody holds the lease (a standby takes over by itself; or use --force)"
        return r, [Done(False, "refused", detail)]
    deadline = e.now + t.ack_timeout_ms
    r = HandoffReceiver(RPhase.REQUESTED, e.handoff_id, e.holder, e.epoch, deadline=deadline)
    return r, [SendRequest(e.holder, e.handoff_id)]


def _begin(r: HandoffReceiver, e: BeginArrived, t: ReceiverTiming) -> Step:
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


def _caught_up(r: HandoffReceiver, e: CaughtUp, t: ReceiverTiming) -> Step:
    if e.handoff_id != r.handoff_id:
        return r, []
    ack = SendAck(r.holder, r.handoff_id, r.epoch, r.heads, r.position)
    r = replace(r, phase=RPhase.ACKED, deadline=e.now + t.yield_wait_ms)
    return r, [ack, Outcome("acked", f"caught up with {r.holder}")]


def _stray_abort(r: HandoffReceiver, e: AbortArrived, t: ReceiverTiming) -> Step:
    return r, [Outcome("ignored", f"an abort from {e.sender} for no wakeup here")]


def _abort_arrived(r: HandoffReceiver, e: AbortArrived, t: ReceiverTiming) -> Step:
    if (e.handoff_id, e.sender) != (r.handoff_id, r.holder):
        return _stray_abort(r, e, t)
    if r.phase is RPhase.REQUESTED and e.reason == NOT_AWAKE:
        # what this machine knew was stale: learn who holds, then ask them
        detail = f"{e.sender} does not hold the lease; looking up who does"
        return replace(r, phase=RPhase.LOOKING), [LookUp(), Outcome("looking", detail)]
    return HandoffReceiver(), [Done(False, "refused", f"{e.sender} refused: {e.reason}")]


def _holder_seen(r: HandoffReceiver, e: LeaseSeen, t: ReceiverTiming) -> Step:
    if e.mine:
        outcome = "took_over" if r.phase is RPhase.FORCING else "handed_over"
        return HandoffReceiver(), [Done(True, outcome, f"awake at epoch {e.epoch}", e.epoch)]
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
        return HandoffReceiver(), [Done(False, "refused", detail)]
    return r, []


def _ticked(r: HandoffReceiver, e: HandoffTicked, t: ReceiverTiming) -> Step:
    if e.now >= r.deadline:
        return _timed_out(r)
    if r.phase is RPhase.LOOKING:
        if not r.ask_again_at:
            return replace(r, ask_again_at=e.now + LOOK_AGAIN_MS), []
        if e.now >= r.ask_again_at:
            # the store still says it holds (its gate was closed a moment: a renewal
            # late, just acquired): ask it again
            r = replace(r, phase=RPhase.REQUESTED, ask_again_at=0.0)
            return r, [SendRequest(r.holder, r.handoff_id)]
    return r, []


def _timed_out(r: HandoffReceiver) -> Step:
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
    return HandoffReceiver(), [*effects, Done(False, "timeout", why)]


Rule = Callable[[HandoffReceiver, Any, ReceiverTiming], Step]
_BUSY = tuple(phase for phase in RPhase if phase is not RPhase.IDLE)

#: The machine: (phase, event type) -> rule. In IDLE, a lease change, a tick or a late
#: CaughtUp has nothing to act on.
RULES: dict[tuple[RPhase, type], Rule] = {
    **{(phase, WakeupAsked): _wakeup for phase in RPhase},
    **{(phase, BeginArrived): _begin for phase in RPhase},
    (RPhase.CATCHING_UP, CaughtUp): _caught_up,
    (RPhase.IDLE, AbortArrived): _stray_abort,
    **{(phase, AbortArrived): _abort_arrived for phase in _BUSY},
    **{(phase, LeaseSeen): _holder_seen for phase in _BUSY},
    **{(phase, HandoffTicked): _ticked for phase in _BUSY},
}
EVENTS = get_args(ReceiverEvent)


def receiver_step(r: HandoffReceiver, event: ReceiverEvent, t: ReceiverTiming) -> Step:
    if not isinstance(event, EVENTS):
        raise IllegalEvent(f"not a receiver event: {event!r}")
    rule = RULES.get((r.phase, type(event)))
    return (r, []) if rule is None else rule(r, event, t)
