"""What a delivery job's result means (baton.core.delivery_steps): every case."""

from __future__ import annotations

import pytest

from baton.core.delivery_steps import (
    REJECTED_PREFIX,
    AfterAgent,
    AfterCheck,
    AfterSend,
    after_agent,
    after_check,
    after_send,
)


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
