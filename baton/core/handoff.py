"""Planned handoff (sans-IO): what the HandoffSentinel (``core.handoff_sentinel``, on the
holder) and the HandoffReceiver (``core.handoff_receiver``, on the machine that should
become awake) share (docs/DESIGN.md, "Live tail and planned handoff").

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

Both sides are state machines, each a table of (phase, event type) -> rule: a step
takes a state and an event and returns the new state and the effects for the
HandoffActor to carry out. An event with no rule in the current phase is a peer's or
a timer's, late or early: it changes nothing (the sentinel says it ignored it, the
actor counts it). Only what is not one of a side's events at all raises IllegalEvent:
nothing here raises on a peer's input.
"""

from __future__ import annotations

from dataclasses import dataclass

from baton.core.versions import CANNOT_SPEAK

#: A machine's transcript heads: (topic, last seq, its ledger key), sorted by topic.
Heads = tuple[tuple[str, int, str], ...]


def heads_of(mapping: dict[str, tuple[int, str]]) -> Heads:
    return tuple(sorted((topic, seq, key) for topic, (seq, key) in mapping.items()))


# --- what both sides take and make ----------------------------------------------------


@dataclass(frozen=True)
class AbortArrived:
    handoff_id: str
    sender: str
    reason: str


@dataclass(frozen=True)
class HandoffTicked:
    """Time passed; ``epoch`` is the one this machine holds now (None: none)."""

    now: float
    epoch: int | None


@dataclass(frozen=True)
class SendAbort:
    to: str
    handoff_id: str
    reason: str


@dataclass(frozen=True)
class Outcome:
    """For the log, the counters and status: what became of a handoff on this side."""

    kind: str  # "begun", "acked", "yielded", "aborted", "refused", "ignored", ...
    detail: str


#: Why a machine that does not hold refuses a request: the asker's view was stale (the
#: lease moved on and word of it has not reached the asker yet), so it looks again.
NOT_AWAKE = "this machine is not awake"

#: Refusals a new attempt cannot change: an attack on the ack, or no lease to move.
FINAL_REFUSALS = (
    "forged",
    "does not match",
    "no lease store",
    "nobody holds the lease",
    CANNOT_SPEAK,  # (baton.core.versions) until a machine is upgraded or leaves
)


def may_retry(outcome: str, detail: str) -> bool:
    """Would a new attempt of a failed wakeup (not ``--force``) likely succeed? A target
    still catching up, a handoff or wakeup already in progress, a lease that moved, a
    phase that ran out of time on a busy host: yes (each left the old holder awake).
    A forged or mismatching ack, or a mesh without a lease to move: no."""
    if outcome not in ("refused", "timeout", "busy"):
        return False
    return not any(final in detail for final in FINAL_REFUSALS)
