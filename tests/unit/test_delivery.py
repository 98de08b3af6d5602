"""The delivery rules (baton.core.delivery): the channel cursor, topic order, resume."""

from __future__ import annotations

from dataclasses import replace

import pytest

from baton.core.delivery import (
    SECURE_AFTER_MS,
    cursor,
    failed_reply,
    next_in_topic,
    next_offset,
    resume,
    to_secure,
    too_large,
)
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry, ack, commit, prepare


@pytest.mark.parametrize(
    ("pending", "highest", "offset"),
    [
        ([], None, None),  # this term has polled nothing: confirm nothing
        ([4, 2], None, None),  # entries learnt from markers alone confirm nothing
        ([], 9, 10),  # everything seen is done
        ([4, 2, None], 9, 2),  # the oldest pending holds the cursor
        ([40], 9, 10),  # a marker's entry above what this term saw cannot raise it
    ],
)
def test_the_cursor_passes_only_what_this_term_saw_and_finished(
    pending: list[int | None], highest: int | None, offset: int | None
) -> None:
    assert next_offset(pending, highest) == offset


def entry(topic_thread: int, message_id: int) -> LedgerEntry:
    msg = InboundMessage("memory", message_id, 1, topic_thread, message_id, "hi", "u")
    return LedgerEntry.of(msg, 0.0)


def test_the_cursor_passes_a_secured_message_though_it_is_not_answered() -> None:
    slow, later = entry(1, 2), entry(2, 5)  # update ids 2 and 5
    assert cursor([slow, later], frozenset(), 9) == (2, True)
    assert cursor([slow, later], {slow.key}, 9) == (5, True)
    assert cursor([slow, later], {slow.key, later.key}, 9) == (10, False)  # long polls
    assert cursor([slow], {slow.key}, None) == (None, False)  # a term confirms nothing unpolled


def test_a_message_unanswered_for_a_while_is_due_to_be_secured() -> None:
    young, old = replace(entry(1, 1), received_ms=1000.0), replace(entry(2, 2), received_ms=0.0)
    done = prepare(replace(entry(3, 3), received_ms=0.0), ["r"], 1, 0.0)
    now = 1000.0 + SECURE_AFTER_MS - 1
    assert to_secure([young, old, done], now) == [old]  # prepared: its marker says it all
    assert to_secure([young], 500.0) == [young]  # recorded "after now": the clock went back
    assert to_secure([young, old], 1000.0, after_ms=0.0) == [young, old]


def test_each_topic_works_on_its_oldest_pending_message_only() -> None:
    done = ack(commit(prepare(entry(1, 1), ["r"], 1, 0.0), 0, 5, 1, 0.0), 0.0)
    firsts = next_in_topic([entry(1, 7), entry(2, 9), done, entry(1, 3), entry(2, 8)])
    assert {t: e.message_id for t, e in firsts.items()} == {"1/1": 3, "1/2": 8}


@pytest.mark.parametrize(
    ("delivered", "policy", "action"),
    [
        (True, "resend", "commit"),
        (True, "skip", "commit"),
        (False, "resend", "send"),
        (False, "skip", "send"),
        (None, "resend", "send"),
        (None, "skip", "commit_unknown"),
    ],
)
def test_resume(delivered: bool | None, policy: str, action: str) -> None:
    assert resume(delivered, policy) == action


def test_failure_replies_say_why() -> None:
    assert too_large("x" * 65537) and not too_large("é" * 32768)
    assert "3 times" in failed_reply(3, "timeout: 30 s") and "timeout" in failed_reply(3, "timeout")
