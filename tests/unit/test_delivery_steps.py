"""Delivery's decisions (baton.core.delivery_steps): the next step on a pending message,
and what a job's result means, every case."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from baton.core.delivery_steps import (
    REJECTED_PREFIX,
    AfterAgent,
    AfterCheck,
    AfterSend,
    Next,
    after_agent,
    after_check,
    after_send,
    next_step,
)
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, LedgerState, begin, commit, prepare


@pytest.mark.parametrize(
    ("ours", "holding", "pending", "replies", "step"),
    [
        (True, True, True, True, AfterAgent.PREPARE),
        (True, True, True, False, AfterAgent.FAILED),
        (False, True, True, True, AfterAgent.IGNORE),  # another term's run
        (True, False, True, True, AfterAgent.IGNORE),  # not holding now: runs again later
        (True, True, False, True, AfterAgent.IGNORE),  # answered meanwhile
    ],
)
def test_after_an_agent_run(
    ours: bool, holding: bool, pending: bool, replies: bool, step: AfterAgent
) -> None:
    assert after_agent(ours, holding, pending, replies) is step


@pytest.mark.parametrize(
    ("ours", "status", "error", "not_delivered", "retry_after", "step"),
    [
        (True, "accepted", None, False, 0.0, AfterSend.COMMIT),
        (False, "accepted", None, False, 0.0, AfterSend.COMMIT),  # the truth, whoever asked
        (False, "repeat", None, False, 0.0, AfterSend.COMMIT),
        (False, "stale", None, False, 0.0, AfterSend.IGNORE),
        (False, None, "boom", False, 0.0, AfterSend.IGNORE),
        (True, "stale", None, False, 0.0, AfterSend.STAND_DOWN),
        (True, None, "not_holder", False, 0.0, AfterSend.RETRY),
        (True, None, "HTTP 429", True, 5000.0, AfterSend.RATE_LIMITED),
        (True, None, "connection refused", True, 0.0, AfterSend.NOT_SENT),
        (True, None, REJECTED_PREFIX + "message is too long", False, 0.0, AfterSend.REJECTED),
        (True, None, "timed out", False, 0.0, AfterSend.UNKNOWN),  # may have arrived
        (True, None, None, False, 0.0, AfterSend.UNKNOWN),
    ],
)
def test_after_a_send(
    ours: bool,
    status: str | None,
    error: str | None,
    not_delivered: bool,
    retry_after: float,
    *,
    step: AfterSend,
) -> None:
    assert after_send(ours, status, error, not_delivered, retry_after) is step


@pytest.mark.parametrize(
    ("ours", "failed", "delivered", "policy", "step"),
    [
        (False, False, True, "resend", AfterCheck.IGNORE),
        (True, True, None, "resend", AfterCheck.RETRY),
        (True, False, True, "resend", AfterCheck.COMMIT),
        (True, False, True, "skip", AfterCheck.COMMIT),
        (True, False, False, "resend", AfterCheck.SEND),
        (True, False, False, "skip", AfterCheck.SEND),
        (True, False, None, "resend", AfterCheck.AMBIGUOUS_SEND),
        (True, False, None, "skip", AfterCheck.AMBIGUOUS_COMMIT),
    ],
)
def test_after_a_delivery_check(
    ours: bool, failed: bool, delivered: bool | None, policy: str, step: AfterCheck
) -> None:
    assert after_check(ours, failed, delivered, policy) is step


def entry_in(state: LedgerState, text: str = "hi", attempts: int = 0) -> LedgerEntry:
    e = LedgerEntry.of(InboundMessage("memory", 9, 1, 1, 7, text, "u"), 0.0)
    if state is LedgerState.RECEIVED:
        return replace(e, attempts=attempts, last_error="crash" if attempts else None)
    if state is LedgerState.PROCESSING:
        return begin(e, 0.0)
    e = prepare(e, ["a", "b"], 1, 0.0)
    return e if state is LedgerState.PREPARED else commit(commit(e, 0, 1, 1, 0.0), 1, 2, 1, 0.0)


def step_of(entry: LedgerEntry, **kw: Any) -> tuple[Next, int | None]:
    args: dict[str, Any] = {
        "ingress_stopped": False,
        "retries": 2,
        "held": False,
        "mine": True,
        "unsure": set(),
    }
    return next_step(entry, **{**args, **kw})


def test_the_next_step_on_a_message_not_prepared_yet() -> None:
    assert step_of(entry_in(LedgerState.RECEIVED)) == (Next.RUN_AGENT, None)
    assert step_of(entry_in(LedgerState.PROCESSING)) == (Next.RUN_AGENT, None)  # again
    assert step_of(entry_in(LedgerState.RECEIVED), ingress_stopped=True) == (Next.WAIT, None)
    huge = entry_in(LedgerState.RECEIVED, "x" * 70_000)
    assert step_of(huge) == (Next.TOO_LARGE, None)
    assert step_of(entry_in(LedgerState.RECEIVED, attempts=2)) == (Next.RUN_AGENT, None)
    assert step_of(entry_in(LedgerState.RECEIVED, attempts=3)) == (Next.GAVE_UP, None)


def test_the_next_step_on_a_prepared_or_committed_message() -> None:
    prepared = entry_in(LedgerState.PREPARED)
    assert step_of(prepared) == (Next.SEND, 0)
    assert step_of(commit(prepared, 0, 5, 1, 0.0)) == (Next.SEND, 1)  # the next reply
    assert step_of(prepared, held=True) == (Next.HELD, None)  # a 429 holds every send
    assert step_of(prepared, unsure={0}) == (Next.CHECK, 0)  # started, outcome unknown
    assert step_of(prepared, mine=False) == (Next.CHECK, 0)  # perhaps sent elsewhere
    assert step_of(entry_in(LedgerState.COMMITTED)) == (Next.ACK, None)
