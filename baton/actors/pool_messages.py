"""Messages of the PoolActor (frozen), its configuration, and the agent pool it uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from baton.actors.delivery_jobs import AgentResult
from baton.agents.base import AgentMessage, Turn
from baton.core.ledger import LedgerEntry
from baton.core.pool_router import TopicRun

Run = Callable[[AgentMessage, Sequence[Turn], Callable[[AgentResult], None]], None]


@dataclass(frozen=True)
class RunFinished:
    """A TopicRun ended here: the replies or why not, for ``asker`` (the holder that
    sent it; this machine itself for the holder's own runs)."""

    run: TopicRun
    asker: str
    replies: tuple[str, ...] | None
    error: str | None


@dataclass(frozen=True)
class SetPool:
    """Turn the pool on or off (the holder only); answers GetPool's view, or raises
    PoolNotHolder on a standby."""

    enabled: bool


@dataclass(frozen=True)
class GetPool:
    """The pool as this machine holds it (status, ``baton pool status``)."""


@dataclass(frozen=True)
class RouteRun:
    """Run the agent on ``entry`` for delivery (its job ``token``, at delivery's term
    ``epoch``), with the topic's ``history``: through the pool, or here."""

    token: int
    entry: LedgerEntry
    history: tuple[Turn, ...]
    epoch: int


@dataclass(frozen=True)
class Heard:
    """The peer monitor heard ``machine_id`` (a pong) at ``now_ms``."""

    machine_id: str
    now_ms: float


@dataclass(frozen=True)
class PoolConfig:
    ttl_ms: int  # the lease's: a machine unheard for longer is dead to the pool
    run_timeout_ms: int  # a run unanswered for longer is taken back


class AgentJobs(Protocol):
    """Delivery's agent pool (baton.actors.delivery_jobs.DeliveryJobs)."""

    def agent(self, token: int, entry: LedgerEntry, history: Sequence[Turn]) -> None: ...

    run: Run


@dataclass(frozen=True)
class StateSynced:
    """This machine's StateSync step asked for ``what`` is done (the pool's handoff):
    ("run", run) the state is pulled for a run here; ("handoff", run) the holder took
    and pushed it before ``run`` goes out; ("release", holder, epoch, topic) this
    machine queued its changes for the holder."""

    what: tuple[Any, ...]
