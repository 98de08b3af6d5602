"""The HandoffSentinel (sans-IO): the holder's side of a planned handoff (the theory of
operation is ``core.handoff``'s).

The table below is the whole machine: (phase, event type) -> rule. An event with no
rule in the phase it arrives in changes nothing and is told as ignored.

Invariants:
- The sentinel yields (YieldTo) only from FLUSHING, which it reaches only through a
  verified ack of its own begin, then Drained, then Confirmed, all before its deadline
  and while it still holds begin's epoch. Every way out of DRAINING or FLUSHING other
  than yielding resumes ingress.
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

#: The sentinel waits a little longer for the ack than the target has to send it, so a
#: target that gives up says why first.
ACK_GRACE = 1.25


class SPhase(StrEnum):
    IDLE = "idle"
    BEGUN = "begun"  # begin sent; waiting for the ack
    DRAINING = "draining"  # ack verified; ingress stopped; replies in flight finishing
    FLUSHING = "flushing"  # drained; the live tail goes out until the target confirms


@dataclass(frozen=True)
class HandoffSentinel:
    phase: SPhase = SPhase.IDLE
    handoff_id: str = ""
    target: str = ""
    epoch: int = 0
    heads: Heads = ()
    position: int = 0
    deadline: float = 0.0


# --- events ----------------------------------------------------------------------------


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


SentinelEvent = BeginAsked | AckArrived | Drained | Confirmed | AbortArrived | HandoffTicked


# --- effects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendBegin:
    to: str
    handoff_id: str
    epoch: int
    heads: Heads
    position: int


@dataclass(frozen=True)
class StopIngress:
    """Take no new message and start no agent run; say Drained once every reply in
    flight is delivered and recorded."""


@dataclass(frozen=True)
class ResumeIngress:
    """The handoff was called off: take messages again."""


@dataclass(frozen=True)
class FlushTo:
    to: str


@dataclass(frozen=True)
class YieldTo:
    to: str
    epoch: int


SentinelEffect = SendBegin | SendAbort | StopIngress | ResumeIngress | FlushTo | YieldTo | Outcome
Step = tuple[HandoffSentinel, list[SentinelEffect]]


# --- the rules -------------------------------------------------------------------------


def _asked(s: HandoffSentinel, e: BeginAsked, ack_timeout_ms: float) -> Step:
    if s.phase is not SPhase.IDLE:
        if (e.handoff_id, e.target) == (s.handoff_id, s.target) and s.phase is SPhase.BEGUN:
            return s, [SendBegin(s.target, s.handoff_id, s.epoch, s.heads, s.position)]
        reason = f"a handoff to {s.target} is in progress"
        return s, [SendAbort(e.target, e.handoff_id, reason), Outcome("refused", reason)]
    if e.epoch is None:
        reason = NOT_AWAKE
        return s, [SendAbort(e.target, e.handoff_id, reason), Outcome("refused", reason)]
    deadline = e.now + ack_timeout_ms * ACK_GRACE
    s = HandoffSentinel(
        SPhase.BEGUN, e.handoff_id, e.target, e.epoch, e.heads, e.position, deadline
    )
    begin = SendBegin(s.target, s.handoff_id, s.epoch, s.heads, s.position)
    return s, [begin, Outcome("begun", f"to {e.target} at epoch {e.epoch}")]


def _acked(s: HandoffSentinel, e: AckArrived, ack_timeout_ms: float) -> Step:
    if (e.handoff_id, e.sender) != (s.handoff_id, s.target):
        return _stray_ack(s, e, ack_timeout_ms)
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


def _stray_ack(s: HandoffSentinel, e: AckArrived, ack_timeout_ms: float) -> Step:
    return s, [Outcome("ignored", f"an ack from {e.sender} for no handoff waiting on it")]


def _drained(s: HandoffSentinel, e: Drained, ack_timeout_ms: float) -> Step:
    return replace(s, phase=SPhase.FLUSHING), [FlushTo(s.target)]


def _confirmed(s: HandoffSentinel, e: Confirmed, ack_timeout_ms: float) -> Step:
    detail = f"to {s.target} at epoch {s.epoch}"
    return HandoffSentinel(), [YieldTo(s.target, s.epoch), Outcome("yielded", detail)]


def _abort_arrived(s: HandoffSentinel, e: AbortArrived, ack_timeout_ms: float) -> Step:
    if (e.handoff_id, e.sender) != (s.handoff_id, s.target):
        return _stray_abort(s, e, ack_timeout_ms)
    return _abort(s, f"{e.sender} gave up: {e.reason}", tell=False)


def _stray_abort(s: HandoffSentinel, e: AbortArrived, ack_timeout_ms: float) -> Step:
    return s, [Outcome("ignored", f"an abort from {e.sender} for no handoff here")]


def _ticked(s: HandoffSentinel, e: HandoffTicked, ack_timeout_ms: float) -> Step:
    if e.epoch != s.epoch:
        return _abort(s, "this machine no longer holds the lease")
    if e.now >= s.deadline:
        return _abort(s, _TIMEOUTS[s.phase].format(target=s.target))
    return s, []


def _idle_tick(s: HandoffSentinel, e: HandoffTicked, ack_timeout_ms: float) -> Step:
    return s, []


def _abort(s: HandoffSentinel, reason: str, tell: bool = True) -> Step:
    effects: list[SentinelEffect] = []
    if s.phase in (SPhase.DRAINING, SPhase.FLUSHING):
        effects.append(ResumeIngress())
    if tell:
        effects.append(SendAbort(s.target, s.handoff_id, reason))
    return HandoffSentinel(), [*effects, Outcome("aborted", reason)]


#: Why a sentinel gave up, by the phase it was in.
_TIMEOUTS = {
    SPhase.BEGUN: "no ack from {target} within the ack timeout",
    SPhase.DRAINING: "the replies in flight did not drain in time",
    SPhase.FLUSHING: "{target} did not confirm the live tail in time",
}

Rule = Callable[[HandoffSentinel, Any, float], Step]
_BUSY = (SPhase.BEGUN, SPhase.DRAINING, SPhase.FLUSHING)

#: The machine: (phase, event type) -> rule.
RULES: dict[tuple[SPhase, type], Rule] = {
    **{(phase, BeginAsked): _asked for phase in SPhase},
    (SPhase.IDLE, AckArrived): _stray_ack,
    (SPhase.BEGUN, AckArrived): _acked,
    (SPhase.DRAINING, AckArrived): _stray_ack,
    (SPhase.FLUSHING, AckArrived): _stray_ack,
    (SPhase.DRAINING, Drained): _drained,
    (SPhase.FLUSHING, Confirmed): _confirmed,
    (SPhase.IDLE, AbortArrived): _stray_abort,
    **{(phase, AbortArrived): _abort_arrived for phase in _BUSY},
    (SPhase.IDLE, HandoffTicked): _idle_tick,
    **{(phase, HandoffTicked): _ticked for phase in _BUSY},
}
EVENTS = get_args(SentinelEvent)


def sentinel_step(s: HandoffSentinel, event: SentinelEvent, ack_timeout_ms: float) -> Step:
    if not isinstance(event, EVENTS):
        raise IllegalEvent(f"not a sentinel event: {event!r}")
    rule = RULES.get((s.phase, type(event)))
    if rule is None:
        return s, [Outcome("ignored", f"{type(event).__name__} while {s.phase.value}")]
    return rule(s, event, ack_timeout_ms)
