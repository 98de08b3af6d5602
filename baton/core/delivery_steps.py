"""What a delivery job's result means (sans-IO): the DeliveryActor's decisions on an
agent run, a send and a delivery check, as enums it carries out. (Issue 15 moves
delivery's decisions into the core step by step; these are the results'.)

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

from baton.core.delivery import resume


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
