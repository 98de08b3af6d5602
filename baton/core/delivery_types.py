"""The values of the delivery machine (baton.core.delivery_machine): its settings, the
events it is told (past tense, each with the time it happened) and the effects its
shell carries out, in order. A ``Persist`` is durable before any effect after it runs;
if it fails, the shell carries out nothing after it and tells ``LedgerFailed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, ReplyMarker
from baton.core.settings import Settings

# logging's levels (a Log effect's; the core does no logging itself)
INFO, WARNING, ERROR = 20, 30, 40


@dataclass(frozen=True)
class DeliveryConfig:
    me: str
    retries: int = 2  # agent failures on one message before it gets a failure reply
    ambiguous_policy: str = "resend"  # a reply a sink cannot say it has: send or record
    ack_timeout_ms: float = 2000.0  # a standby slower to ack a marker leaves the set
    retention_ms: float = 7 * 86_400_000.0  # done entries older than this are pruned
    retention_entries: int = 100_000  # and beyond this many

    @classmethod
    def of(cls, me: str, s: Settings) -> DeliveryConfig:
        return cls(
            me,
            retries=s.agent_retries,
            ambiguous_policy=s.ambiguous_policy,
            # a standby slower than this to record a marker leaves the in-sync set
            ack_timeout_ms=max(2000.0, s.lease_ttl_ms / 2),
            retention_ms=s.ledger_retention_days * 86_400_000.0,
            retention_entries=s.ledger_retention_entries,
        )


@dataclass(frozen=True)
class At:
    """When an event happened: local monotonic ms (decisions) and wall ms (records)."""

    now: float
    wall_ms: float


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryTicked:
    """Time passed; what the LeaseGate says now: the epoch this machine may act with
    (None: it may not) and the lease as known."""

    at: At
    epoch: int | None
    holder: str | None = None
    in_sync: tuple[str, ...] = ()
    may_take_over: bool = True


@dataclass(frozen=True)
class Polled:
    """A poll brought ``messages`` and ``skipped`` updates (their reasons); ``highest``
    is the highest update id among all of them (None: it brought nothing). ``stored``:
    what the ledger already holds of the messages that are not pending (a channel may
    deliver a done one again). ``epoch``: the term it was made under (None: this one;
    the shell always says), since only a poll of this term covers its updates."""

    at: At
    messages: tuple[InboundMessage, ...]
    skipped: tuple[str, ...] = ()
    highest: int | None = None
    stored: Mapping[str, LedgerEntry] = field(default_factory=dict)
    epoch: int | None = None


@dataclass(frozen=True)
class AgentDone:
    at: At
    token: int
    key: str
    replies: tuple[str, ...] | None
    error: str | None = None


@dataclass(frozen=True)
class SendDone:
    at: At
    token: int
    key: str
    index: int
    epoch: int | None
    status: str | None  # the sink's answer (accepted, repeat, stale, ...); None: none
    message_id: int | None = None
    error: str | None = None
    not_delivered: bool = False  # the error says nothing was delivered
    retry_after_ms: float = 0.0  # a 429: not before this long


@dataclass(frozen=True)
class CheckDone:
    at: At
    token: int
    key: str
    index: int
    delivered: bool | None
    error: str | None = None


@dataclass(frozen=True)
class MarkerArrived:
    """A marker signed by ``sender``, an active member (the shell checked); ``stored``:
    the ledger's entry of its key, if the ledger has one."""

    at: At
    sender: str
    marker: ReplyMarker
    stored: LedgerEntry | None


@dataclass(frozen=True)
class MarkerAckArrived:
    at: At
    sender: str
    marker_id: str


@dataclass(frozen=True)
class SyncRequested:
    """A standby asks to join with a page of the keys it holds unfinished; ``stored``:
    the ledger's entries of those keys that are not pending here."""

    at: At
    sender: str
    keys: tuple[str, ...]
    page: int
    more: bool
    stored: Mapping[str, LedgerEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class MembersChanged:
    peers: frozenset[str]  # the other active members


@dataclass(frozen=True)
class IngressStopped:
    """A planned handoff: no new message, no agent run; say ``Drained`` once every
    reply in flight is delivered and recorded."""

    at: At


@dataclass(frozen=True)
class IngressResumed:
    at: At


@dataclass(frozen=True)
class LedgerFailed:
    """The ledger write ``failed`` (the disk; ``detail`` says how): the effects after it
    in the same step (``dropped``) were not carried out."""

    at: At
    failed: Persist
    detail: str
    dropped: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class Reloaded:
    """The ledger's pending entries, read back after a failed write."""

    at: At
    pending: tuple[LedgerEntry, ...]


Event = (
    DeliveryTicked
    | Polled
    | AgentDone
    | SendDone
    | CheckDone
    | MarkerArrived
    | MarkerAckArrived
    | SyncRequested
    | MembersChanged
    | IngressStopped
    | IngressResumed
    | LedgerFailed
    | Reloaded
)


# --- effects --------------------------------------------------------------------------


class LedgerOp(StrEnum):
    """A ledger port method; ``Persist.args`` are its arguments."""

    RECORD = "record"
    BEGIN = "begin"
    FAIL = "fail"
    PREPARE = "prepare"
    COMMIT = "commit"
    ACK = "ack"
    APPLY_MARKER = "apply_marker"


@dataclass(frozen=True)
class Persist:
    """One ledger step, durable before any effect after it; ``entry`` is what the
    machine holds after it (the port returns the same: it runs the same rules)."""

    op: LedgerOp
    entry: LedgerEntry
    args: tuple[Any, ...]


@dataclass(frozen=True)
class StartAgent:
    """Run the agent on ``entry`` with its topic's history (job ``token``); the holder of
    ``epoch`` asks, so the transcripts are replayed from the live tail first."""

    token: int
    entry: LedgerEntry
    epoch: int


@dataclass(frozen=True)
class Send:
    token: int
    entry: LedgerEntry
    index: int


@dataclass(frozen=True)
class Check:
    """Ask the sink whether reply ``index`` of ``entry`` arrived."""

    token: int
    entry: LedgerEntry
    index: int


@dataclass(frozen=True)
class TurnDone:
    """``entry`` is acked (every reply delivered): its turn joins the topic's transcript."""

    entry: LedgerEntry
    epoch: int


@dataclass(frozen=True)
class TurnSeen:
    """A standby: the holder's markers say ``entry`` is done (every reply delivered).
    Its turn belongs in the transcript even if the holder dies before its live tail
    brings it: a takeover adds it (no turn the user saw is lost)."""

    entry: LedgerEntry


@dataclass(frozen=True)
class PushMarker:
    to: str
    marker: ReplyMarker


@dataclass(frozen=True)
class AckMarker:
    to: str
    marker_id: str


@dataclass(frozen=True)
class RequestSync:
    to: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class WantInSync:
    in_sync: tuple[str, ...]


@dataclass(frozen=True)
class PublishCursor:
    offset: int | None
    waiting: bool  # a message polled is still held back


@dataclass(frozen=True)
class Count:
    name: str
    n: int = 1


@dataclass(frozen=True)
class Log:
    level: int  # logging's levels
    text: str
    event: Mapping[str, Any] | None = None  # a structured event a checker can match


@dataclass(frozen=True)
class Prune:
    wall_ms: float
    max_age_ms: float
    max_entries: int


@dataclass(frozen=True)
class Reload:
    """Read the ledger's pending entries back (tell ``Reloaded``)."""


@dataclass(frozen=True)
class Drained:
    """Every reply in flight is delivered and recorded: the handoff may go on."""


Effect = (
    Persist
    | StartAgent
    | Send
    | Check
    | TurnDone
    | TurnSeen
    | PushMarker
    | AckMarker
    | RequestSync
    | WantInSync
    | PublishCursor
    | Count
    | Log
    | Prune
    | Reload
    | Drained
)


def group_commit(effects: Sequence[Effect]) -> tuple[list[Effect], list[Persist], list[Effect]]:
    """A step's effects as its shell carries them out: those before its first ledger
    write, then every write as one transaction (one fsync, not one per write), then the
    rest in order. Every effect still comes after each write the step put before it;
    one between two writes now also waits for the later one, which only delays it (each
    is a message out or a job started, and a crash may cut in before any of them)."""
    first = next((n for n, e in enumerate(effects) if isinstance(e, Persist)), len(effects))
    writes = [e for e in effects[first:] if isinstance(e, Persist)]
    after: list[Effect] = [e for e in effects[first:] if not isinstance(e, Persist)]
    return list(effects[:first]), writes, after
