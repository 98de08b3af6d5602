"""Delivery's decisions (sans-IO), as enums the DeliveryActor carries out: the next step
on a pending message (``next_step``), and what an agent run's, a send's and a delivery
check's result means. (Issue 15 moves delivery's decisions into the core step by step.)

- A message not prepared yet: a handoff that stopped ingress leaves it to the next
  holder; one too large for the agent, or that the agent failed on more than
  ``retries`` times, is answered with one reply saying so; else the agent runs.
- A prepared reply waits while a 429 holds every send back; then it is sent if this
  process prepared it and never started its send, else the sink is asked first (it
  may have been sent: by another machine, an earlier incarnation, or a send whose
  outcome was lost).
- A message whose every reply is delivered is acked.

- A result the topic no longer waits on (another term's job) changes nothing, except a
  delivered send: that is the truth about the sink and is always recorded.
- A send that surely delivered nothing (a 429, a refused connection, not holding when
  it went) is sent again, never counted ambiguous; a 429 holds every send back.
- A send refused as stale means a newer holder acted: stand down at once.
- A send refused for good (thread gone, text refused) is recorded as done without a
  message, so nothing waits on it for ever.
- Any other failure may have delivered: ask the sink before sending again.
- A check that could not tell (a sink without reply keys) is an ambiguous send: the
  policy decides, and it is reported either way.
"""

from __future__ import annotations

from enum import StrEnum

from baton.core.delivery import resume, too_large
from baton.core.ledger import LedgerEntry, LedgerState


class Next(StrEnum):
    WAIT = "wait"  # ingress stopped for a handoff: the next holder starts it
    TOO_LARGE = "too_large"  # answer with one reply: too large for the agent
    GAVE_UP = "gave_up"  # answer with one reply: the agent failed too often
    RUN_AGENT = "run_agent"
    HELD = "held"  # a 429 holds every send back until its retry_after
    SEND = "send"  # reply ``index`` is this process's to send, never started
    CHECK = "check"  # reply ``index`` may have been sent: ask the sink first
    ACK = "ack"  # every reply delivered: done


def next_step(
    entry: LedgerEntry,
    *,
    ingress_stopped: bool,
    retries: int,
    held: bool,
    mine: bool,
    unsure: frozenset[int] | set[int],
) -> tuple[Next, int | None]:
    """The next step on pending ``entry`` and the reply index it concerns (SEND and
    CHECK). ``held``: a 429 holds sends now; ``mine``: this process prepared its replies
    (or knows every send it started); ``unsure``: indexes whose send it started and
    whose outcome it does not know."""
    if entry.state in (LedgerState.RECEIVED, LedgerState.PROCESSING):
        if ingress_stopped:
            return Next.WAIT, None
        if too_large(entry.text):
            return Next.TOO_LARGE, None
        if entry.attempts > retries and entry.last_error is not None:
            return Next.GAVE_UP, None
        return Next.RUN_AGENT, None
    if entry.state is LedgerState.PREPARED:
        if held:
            return Next.HELD, None
        index = entry.uncommitted()[0].index
        return (Next.SEND if mine and index not in unsure else Next.CHECK), index
    if entry.state is LedgerState.COMMITTED:
        return Next.ACK, None
    return Next.WAIT, None  # acked: nothing to do


class AfterAgent(StrEnum):
    IGNORE = "ignore"  # another term's run, or the message moved on meanwhile
    FAILED = "failed"  # recorded as a failure; run again after a back-off
    PREPARE = "prepare"  # the replies are fixed: prepare them


class AfterSend(StrEnum):
    COMMIT = "commit"  # delivered (accepted, or the sink knew the reply's key)
    IGNORE = "ignore"  # another job's result that delivered nothing
    STAND_DOWN = "stand_down"  # refused as stale: a newer holder has acted
    RETRY = "retry"  # not holding when it went: nothing was sent
    RATE_LIMITED = "rate_limited"  # a 429: nothing delivered; every send waits
    NOT_SENT = "not_sent"  # a refused connection: nothing delivered; send again
    REJECTED = "rejected"  # refused for good: recorded done without a message
    UNKNOWN = "unknown"  # it may have arrived: ask the sink before sending again


class AfterCheck(StrEnum):
    IGNORE = "ignore"  # another job's result
    RETRY = "retry"  # the check failed: check again later
    SEND = "send"  # not delivered: send it
    COMMIT = "commit"  # delivered: record it
    AMBIGUOUS_SEND = "ambiguous_send"  # the sink cannot say; policy resend: report, send
    AMBIGUOUS_COMMIT = "ambiguous_commit"  # the sink cannot say; policy skip: report, record


REJECTED_PREFIX = "rejected: "  # a send error that starts so: refused for good


def after_agent(ours: bool, holding: bool, still_pending: bool, replies: bool) -> AfterAgent:
    """An agent run ended (``replies``: it gave some; else it failed)."""
    if not ours or not holding or not still_pending:
        return AfterAgent.IGNORE
    return AfterAgent.PREPARE if replies else AfterAgent.FAILED


def after_send(
    ours: bool,
    status: str | None,
    error: str | None,
    not_delivered: bool,
    retry_after_ms: float,
) -> AfterSend:
    """A send ended with the sink's ``status`` (None: no answer) or ``error``."""
    if status in ("accepted", "repeat"):
        return AfterSend.COMMIT
    if not ours:
        return AfterSend.IGNORE
    if status == "stale":
        return AfterSend.STAND_DOWN
    if error == "not_holder":
        return AfterSend.RETRY
    if not_delivered:
        return AfterSend.RATE_LIMITED if retry_after_ms else AfterSend.NOT_SENT
    if error is not None and error.startswith(REJECTED_PREFIX):
        return AfterSend.REJECTED
    return AfterSend.UNKNOWN


def after_check(ours: bool, failed: bool, delivered: bool | None, policy: str) -> AfterCheck:
    """A delivery check ended: the sink said ``delivered`` (None: it cannot say)."""
    if not ours:
        return AfterCheck.IGNORE
    if failed:
        return AfterCheck.RETRY
    action = resume(delivered, policy)
    if delivered is None:
        return AfterCheck.AMBIGUOUS_SEND if action == "send" else AfterCheck.AMBIGUOUS_COMMIT
    return AfterCheck.SEND if action == "send" else AfterCheck.COMMIT
