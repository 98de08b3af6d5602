"""The values of FencedLease (baton.core.lease): its state, configuration, timing, and
the events it takes and effects it returns. Frozen dataclasses, no behaviour beyond
the timing arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from baton.core.errors import LeaseRefused
from baton.core.lease_record import LeaseRecord
from baton.core.lease_store import CasResult, Stored
from baton.core.registry import Signer


class Phase(StrEnum):
    STANDBY = "standby"
    HOLDING = "awake"


@dataclass(frozen=True)
class Timing:
    ttl_ms: int
    renew_ms: int
    rho: float
    margin_ms: float

    @classmethod
    def of(cls, ttl_ms: int, renew_ms: int, rho: float) -> Timing:
        """The margin is 5% of the ttl: slack for the time between a check and an act."""
        return cls(ttl_ms, renew_ms, rho, ttl_ms / 20)

    @property
    def holder_window(self) -> float:
        return self.ttl_ms * (1 - self.rho) - self.margin_ms

    def standby_wait(self, ttl_ms: int) -> float:
        """How long a standby waits after the last renewal it saw (the record's ttl)."""
        return ttl_ms * (1 + self.rho)

    @property
    def retry_ms(self) -> float:
        return self.renew_ms / 3


@dataclass(frozen=True)
class LeaseConfig:
    me: str
    timing: Timing
    signer: Signer


@dataclass(frozen=True)
class Attempt:
    kind: str  # "acquire" | "renew" | "release" | "read" (a standby's look, nothing written)
    expected: str | None
    record: LeaseRecord
    t_sent: float


@dataclass(frozen=True)
class LeaseState:
    phase: Phase = Phase.STANDBY
    known: LeaseRecord | None = None  # the newest valid record seen, store or wire
    seen_at: float | None = None  # local ms when ``known`` was first seen
    floor: int = 0  # the highest valid epoch seen anywhere
    stored: Stored | None = None  # the store's last answer (its token is the next CAS's)
    garbage_since: float | None = None  # local ms since the store has held garbage
    mine: LeaseRecord | None = None  # my record as the store last confirmed it
    mine_token: str | None = None  # its token: renewals and releases CAS from this alone
    deadline: float | None = None  # HOLDING: act only before this local ms
    inflight: Attempt | None = None
    unsure: tuple[Attempt, ...] = ()
    last_write: float | None = None  # local ms of the last write sent
    next_try: float = 0.0
    last_from: tuple[tuple[str, tuple[int, int]], ...] = ()  # newest order per holder
    store_ok: bool | None = None
    stopping: bool = False
    yield_to: str | None = None  # a planned handoff: the release goes to this machine alone
    hold_off: float = 0.0  # after yielding: no acquisition before this local ms, unless
    # a newer record of another machine arrives (the handoff's target acquired, or it
    # yields back to us)
    want_in_sync: tuple[str, ...] | None = None  # HOLDING: the in-sync set to write next
    forced_until: float = 0.0  # `wakeup --force`: acquire though not in sync, until then
    unable: str | None = None  # why this machine may not acquire (a protocol it cannot speak)
    late: bool = False  # the last write landed after its deadline (renewed at once, once)


# --- events and effects ------------------------------------------------------------


@dataclass(frozen=True)
class LeaseTicked:
    now: float
    wall: float


@dataclass(frozen=True)
class RecordSeen:
    record: LeaseRecord
    now: float
    token: str | None = None  # the store's token for it, as the sender knows it


@dataclass(frozen=True)
class StoreAnswered:
    attempt: Attempt
    result: CasResult
    now: float


@dataclass(frozen=True)
class StoreFailed:
    attempt: Attempt
    detail: str
    now: float


@dataclass(frozen=True)
class StopRequested:
    now: float
    wall: float


@dataclass(frozen=True)
class YieldRequested:
    """A planned handoff to ``to`` is agreed: stop acting now and release the lease to
    ``to`` alone (the other standbys learn of it when ``to`` acquires)."""

    to: str
    now: float
    wall: float


@dataclass(frozen=True)
class Fenced:
    """A fencing sink refused a side effect stamped ``epoch``: it has seen ``highest``."""

    epoch: int
    highest: int
    now: float


@dataclass(frozen=True)
class InSyncWanted:
    """The holder's delivery wants the record to name ``in_sync`` as the standbys that
    hold every marker it sent (it shrinks the set before a send goes on without a
    standby, and grows it when a standby has caught up)."""

    in_sync: tuple[str, ...]
    now: float
    wall: float


@dataclass(frozen=True)
class TakeoverForced:
    """`wakeup --force`: acquire the expired lease though this machine is not in the
    in-sync set (the operator accepts that it may answer again what others answered)."""

    now: float


@dataclass(frozen=True)
class LookUpAsked:
    """Someone here needs to know who holds now (a wakeup asked a machine that no longer
    does): a standby reads the store at once instead of at its next look."""

    now: float
    wall: float


@dataclass(frozen=True)
class ProtocolChecked:
    """Whether this machine can speak the protocol the mesh runs at (baton.core.versions):
    ``unable`` says why not (it may then never acquire, not even forced); None: it can."""

    unable: str | None


Event = (
    LeaseTicked
    | RecordSeen
    | StoreAnswered
    | StoreFailed
    | StopRequested
    | Fenced
    | YieldRequested
    | InSyncWanted
    | TakeoverForced
    | LookUpAsked
    | ProtocolChecked
)


@dataclass(frozen=True)
class WriteLease:
    attempt: Attempt


@dataclass(frozen=True)
class Broadcast:
    record: LeaseRecord
    token: str | None = None  # so a standby can CAS from it without asking the store


@dataclass(frozen=True)
class SendTo:
    machine_id: str
    record: LeaseRecord
    token: str | None = None


@dataclass(frozen=True)
class LeaseChanged:
    """The lease's news: this machine's phase now, who holds (None: nobody known) and at
    which epoch, and why. The lease's listeners get it; the node tells it, as it is, to
    every actor that follows the holder (registry, delivery, live tail, handoff)."""

    phase: Phase
    holder: str | None
    epoch: int
    reason: str


@dataclass(frozen=True)
class Alarm:
    kind: str  # "split_brain" | "stale_holder" | "store_garbage" | "store_unavailable" | ...
    detail: str


@dataclass(frozen=True)
class Dropped:
    error: LeaseRefused


Effect = WriteLease | Broadcast | SendTo | LeaseChanged | Alarm | Dropped
