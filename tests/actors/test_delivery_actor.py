"""DeliveryActor with in-memory parts (tests/actors/machines.py). The judge is the
channel's raw log of send attempts: exactly one accepted reply per message, in topic
order."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from baton.actors.delivery_messages import (
    GetDelivery,
    GetUserMessage,
    QueueUserMessage,
)
from baton.actors.messages import EnvelopeReceived, MembersChanged
from baton.agents.base import AgentMessage, Turn
from baton.channels.memory import MemoryChannel
from baton.core.errors import BatonError, LedgerError
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.ledger import marker_for
from baton.core.settings import Settings
from baton.stores.ledger_memory import MemoryLedger
from baton.wire.envelope import Envelope
from baton.wire.marker_transport import ReplyMarkerTransport
from tests.actors.machines import (
    Machine,
    accepted,
    all_answered,
    bot_texts,
    post_many,
    tail_caught_up,
)
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)


def test_the_holder_answers_each_message_once_in_order_and_the_standby_keeps_markers(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    a.hold(1)
    ids = post_many(channel, 30)
    wait_for(lambda: all_answered(channel, ids), 20, "every message answered")
    assert set(accepted(channel).values()) == {1}
    assert bot_texts(channel, "t0")[:3] == [
        "echo: m0 (earlier turns: 0)",
        "echo: m3 (earlier turns: 1)",
        "echo: m6 (earlier turns: 2)",
    ]
    wait_for(lambda: b.ledger.counts()["acked"] == 30, 10, "the standby's markers")
    assert all(p["poller"] == "" for p in channel.polls) and a.counters.get("poll.calls") > 0
    assert b.counters.get("poll.calls") == 0  # the standby never polls
    # counted per update: every update polled (some more than once), each message once
    assert a.counters.get("poll.updates") >= 30 and a.counters.get("delivery.received") == 30


def test_a_new_holder_resumes_without_doubling_and_the_turn_count_continues(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    a.hold(1)
    first = post_many(channel, 9)
    wait_for(lambda: all_answered(channel, first), 20, "the first messages")
    wait_for(lambda: b.ledger.counts()["acked"] == 9, 10, "markers")
    wait_for(lambda: tail_caught_up(a, b), 10, "the live tail")
    a.hold(None)  # a stops acting (a lost lease); b takes over with epoch 2
    second = post_many(channel, 6, start=9)
    b.hold(2)
    wait_for(lambda: all_answered(channel, first | second), 20, "the rest")
    assert set(accepted(channel).values()) == {1}
    assert bot_texts(channel, "t0")[3:] == [
        "echo: m9 (earlier turns: 3)",
        "echo: m12 (earlier turns: 4)",
    ]


def test_a_reply_whose_send_outcome_was_lost_is_checked_before_any_resend(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, _ = pair
    channel.fail_sends(1, delivered=True)  # delivered, but the answer is lost
    a.hold(1)
    ids = post_many(channel, 3)
    wait_for(lambda: all_answered(channel, ids), 20, "answered")
    wait_for(lambda: a.ledger.counts()["acked"] == 3, 10, "all done")
    assert set(accepted(channel).values()) == {1}
    assert a.counters.get("delivery.send_unknown") == 1
    assert a.counters.get("delivery.resumed_commit") == 1


def test_an_old_holder_still_sending_is_refused_as_stale_and_told_to_stand_down(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    b.hold(2)
    first = post_many(channel, 3)
    wait_for(lambda: all_answered(channel, first), 20, "b answers")
    b.hold(None)
    a.hold(1)  # a believes it holds an older epoch (paused through b's whole term)
    second = post_many(channel, 1, start=3)
    wait_for(lambda: a.fenced, 20, "a fenced")
    assert a.fenced[0] == (1, 2)
    assert not all_answered(channel, second)
    assert [s["outcome"] for s in channel.sends].count("stale") >= 1


def test_too_large_messages_and_failing_agents_get_one_error_reply(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, _ = pair
    a.hold(1)
    big = channel.post_user_message("t0", "x" * 70000, "c-big-0001")
    bad = channel.post_user_message("t1", "fail please", "c-bad-0001")
    fine = channel.post_user_message("t1", "after the failure", "c-fine-001")
    wait_for(lambda: all_answered(channel, {big, bad, fine}), 30, "every message answered")
    assert bot_texts(channel, "t0") == [
        "[baton] this message is too large to answer (70000 bytes; the limit is 65536)."
    ]
    failed, after = bot_texts(channel, "t1")
    assert failed.startswith("[baton] the agent failed on this message 2 times")
    assert after == "echo: after the failure (earlier turns: 1)"
    assert a.counters.get("delivery.agent_failed") == 2


def test_bad_updates_are_skipped_and_the_cursor_passes_them(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, _ = pair
    first = channel.post_user_message("t0", "first", "c-first-01")  # makes thread 1
    channel.inject_update({"update_id": "x"})  # no usable id: dropped
    channel.inject_update({"update_id_missing": 1})
    skipped = channel.inject_update({"update_id": 10_000, "message": {"message_id": "nope"}})
    text = {"message_id": 500, "chat": {"id": 1}, "message_thread_id": 1, "text": "caf\ud800"}
    text["is_topic_message"] = True
    channel.inject_update({"update_id": 10_001, "message": text})
    a.hold(1)
    wait_for(lambda: all_answered(channel, {first, 500}), 20, "the odd message answered")
    assert skipped >= 1 and a.counters.get("delivery.skipped.malformed") >= 1
    wait_for(lambda: a.cursor.read()[0] == 10_002, 10, "the cursor past everything")
    reply = next(s for s in channel.sends if s["reply_to"] == 500)
    assert reply["outcome"] == "accepted"


def test_markers_from_strangers_are_refused_and_unknown_messages_are_learnt(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    stranger = Machine(30, channel, {})
    try:
        stranger.router[b.id] = b
        a.hold(1)
        [mid] = post_many(channel, 1)
        wait_for(lambda: a.ledger.counts()["acked"] == 1, 20, "answered")
        entry = a.ledger.get(f"memory:1/1:{mid}")
        assert entry is not None
        forged = marker_for(entry, "committed", 9, 0)
        ReplyMarkerTransport(stranger.id, stranger.signer, stranger.send).push(b.id, forged)
        wait_for(lambda: b.counters.get("marker.refused") == 1, 10, "the refusal")
        wait_for(lambda: b.counters.get("marker.applied") >= 2, 10, "a's markers")
        assert b.counters.get("marker.unknown_message") == 1  # learnt from the first marker
    finally:
        stranger.stop()


def test_a_standby_queues_user_messages_until_a_holder_exists_then_forwards(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    item = b.ref.ask(QueueUserMessage("t9", "from the standby"), timeout=5)
    assert b.ref.ask(GetUserMessage(item), timeout=5)["status"] == "queued"
    assert [q.item_id for q in b.ledger.queue_items()] == [item]
    a.hold(1)
    b.ref.tell(LeaseChanged(Phase.STANDBY, a.id, 0, "holder changed"))
    wait_for(lambda: b.ref.ask(GetUserMessage(item), timeout=5)["status"] == "posted", 20, "posted")
    assert b.ledger.queue_items() == [] and a.ledger.queue_items() == []
    assert [m["text"] for m in channel.messages("t9") if m["from"] == "user"] == [
        "from the standby"
    ]
    wait_for(lambda: bot_texts(channel, "t9"), 20, "the reply")
    view: dict[str, Any] = a.ref.ask(GetDelivery(), timeout=5)
    assert view["term"] == 1


def test_a_reply_the_channel_refuses_for_good_is_recorded_and_does_not_block_its_topic(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, _ = pair
    first = channel.post_user_message("t0", "first", "c-first-01")  # makes thread 1
    lost = {"message_id": 900, "chat": {"id": 1}, "message_thread_id": 77, "text": "gone"}
    lost["is_topic_message"] = True
    channel.inject_update({"update_id": 10_000, "message": lost})  # a thread that is no more
    later = channel.post_user_message("t0", "later", "c-later-01")
    a.hold(1)
    wait_for(lambda: all_answered(channel, {first, later}), 20, "the topic keeps flowing")
    wait_for(lambda: a.counters.get("delivery.rejected") == 1, 10, "the refusal recorded")
    entry = a.ledger.get("memory:1/77:900")
    assert entry is not None and entry.replies[0].message_id is None
    assert 900 not in accepted(channel)


def test_channel_errors_and_timeouts_are_waited_out_and_nothing_is_lost_or_doubled(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, _ = pair
    channel.fail_polls(3)
    channel.fail_sends(2, delivered=False)  # refused before delivery: sent again
    a.hold(1)
    ids = post_many(channel, 6)
    wait_for(lambda: all_answered(channel, ids), 30, "answered despite the errors")
    wait_for(lambda: a.ledger.counts()["acked"] == 6, 10, "all done")
    assert set(accepted(channel).values()) == {1}
    assert a.counters.get("poll.failed") == 3
    assert a.counters.get("delivery.send_unknown") == 2
    assert a.counters.get("delivery.resumed_commit") == 0  # checked: not there, so re-sent


def test_markers_from_a_member_revoked_since_are_refused(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    a.hold(1)
    [first] = post_many(channel, 1)
    wait_for(lambda: b.counters.get("marker.applied") >= 2, 10, "markers while a is a member")
    b.ref.tell(MembersChanged(()))  # a is revoked: b's registry has no active peer left
    [second] = post_many(channel, 1, start=1)
    wait_for(lambda: all_answered(channel, {first, second}), 20, "a still answers")
    wait_for(lambda: b.counters.get("marker.refused") >= 2, 10, "its markers refused")
    assert b.ledger.get(f"memory:1/2:{second}") is None


class CannotSay:
    """A channel like Telegram: it cannot say whether a reply key was delivered."""

    def __init__(self, inner: MemoryChannel) -> None:
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def delivered(self, reply_key: str) -> bool | None:
        return None


@pytest.mark.parametrize(
    ("policy", "outcomes"), [("resend", ["accepted", "repeat"]), ("skip", ["accepted"])]
)
def test_at_a_sink_that_cannot_say_the_policy_decides_and_each_case_is_counted(
    policy: str, outcomes: list[str]
) -> None:
    channel = MemoryChannel("memory")
    settings = Settings(ambiguous_policy=policy)
    a = Machine(10, CannotSay(channel), {}, settings=settings)
    try:
        channel.fail_sends(1, delivered=True)  # delivered; the answer is lost
        a.hold(1)
        [mid] = post_many(channel, 1)
        wait_for(lambda: a.ledger.counts()["acked"] == 1, 20, "done")
        assert [s["outcome"] for s in channel.sends if s["reply_to"] == mid] == outcomes
        assert a.counters.get("delivery.ambiguous") == 1
    finally:
        a.stop()


def hand_prepared_marker(a: Machine, b: Machine, key: str) -> None:
    """a's reply-prepared marker for ``key`` reaches b (whatever else a's wire drops)."""
    entry = a.ledger.get(key)
    assert entry is not None

    def to_b(env: Envelope) -> bool:
        b.ref.tell(EnvelopeReceived(env))
        return True

    ReplyMarkerTransport(a.id, a.signer, to_b).push(b.id, marker_for(entry, "prepared", 1))
    wait_for(lambda: b.counters.get("marker.applied") == 1, 10, "b has the marker")


def term_of(m: Machine) -> int | None:
    view: dict[str, Any] = m.ref.ask(GetDelivery(), timeout=5)
    return view["term"]


class Held:
    """A channel whose sends wait until the test lets them go (``entered`` says one is
    waiting), and that cannot say whether a reply arrived (like Telegram)."""

    def __init__(self, inner: MemoryChannel) -> None:
        self.inner = inner
        self.name = inner.name
        self.entered = threading.Event()
        self.go = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def delivered(self, reply_key: str) -> bool | None:
        return None

    def send(self, reply: Any) -> Any:
        self.entered.set()
        self.go.wait(20)
        return self.inner.send(reply)


def two_replies(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    return [f"first: {message.text}", f"second: {message.text}"]


def attempts_per_reply(channel: MemoryChannel, m: Machine) -> list[int]:
    # the one message, done: its turn reaches the transcript after the ledger's ack
    [turn] = wait_for(lambda: m.transcripts.history("1/1", 10), 10, "the turn recorded")
    entry = m.ledger.get(turn.ledger_key)
    assert entry is not None
    sent = Counter(s["reply_key"] for s in channel.sends)
    return [sent[r.reply_key] for r in entry.replies]


def test_a_late_renewal_on_the_same_epoch_resumes_without_a_second_send() -> None:
    channel = MemoryChannel("memory")
    held = Held(channel)
    a = Machine(10, held, {}, agent=two_replies)
    try:
        a.hold(1)
        channel.post_user_message("t0", "hello", "c-hello-01")
        wait_for(held.entered.is_set, 10, "reply 0 on its way")
        a.hold(None)  # the renewal is late: the gate closes ...
        wait_for(lambda: term_of(a) is None, 10, "the actor to stand by")
        a.hold(1)  # ... and it lands: the same epoch again
        wait_for(lambda: term_of(a) == 1, 10, "the actor to hold again")
        held.go.set()
        wait_for(lambda: a.ledger.counts()["acked"] == 1, 10, "done")
        assert attempts_per_reply(channel, a) == [1, 1]
        assert a.counters.get("delivery.ambiguous") == 0
    finally:
        held.go.set()
        a.stop()


def test_skip_never_records_a_reply_nobody_sent_as_delivered() -> None:
    channel = MemoryChannel("memory")
    held = Held(channel)
    a = Machine(10, held, {}, settings=Settings(ambiguous_policy="skip"), agent=two_replies)
    try:
        a.hold(1)
        channel.post_user_message("t0", "hello", "c-hello-01")
        wait_for(held.entered.is_set, 10, "reply 0 on its way")
        a.hold(None)
        wait_for(lambda: term_of(a) is None, 10, "the actor to stand by")
        a.hold(2)  # a new epoch: reply 0's fate is unknown, reply 1 was never sent
        wait_for(lambda: a.counters.get("delivery.ambiguous") == 1, 10, "reply 0 skipped")
        held.go.set()
        wait_for(lambda: a.ledger.counts()["acked"] == 1, 10, "done")
        assert attempts_per_reply(channel, a) == [1, 1]
        assert a.counters.get("delivery.ambiguous") == 1  # reply 0, and only it
    finally:
        held.go.set()
        a.stop()


def test_a_stale_refusal_ends_the_term_at_once_instead_of_sending_again() -> None:
    channel = MemoryChannel("memory")
    channel.highest_epoch = 5  # the chat has seen a newer holder act
    a = Machine(10, channel, {})
    try:
        a.hold(1)  # e.g. no lease store: a founder acting with epoch 1 for good
        channel.post_user_message("t0", "hello", "c-hello-01")
        wait_for(lambda: a.fenced, 10, "the refusal")
        wait_for(lambda: term_of(a) is None, 10, "the actor to stand down")
        assert [s["outcome"] for s in channel.sends] == ["stale"]
        assert a.fenced == [(1, 5)]
    finally:
        a.stop()


def test_a_new_holder_never_confirms_an_update_it_has_not_seen() -> None:
    """The old holder prepared "fast" (update 2; its marker reached b) while its agent
    still thought about "slow" (update 1), then died. b's cursor must not pass update 1
    on the strength of the marker: b answers both."""
    thinking = threading.Event()

    def slow_agent(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        if message.text == "slow":
            thinking.set()
            threading.Event().wait(30)  # a holder about to die; a's agent never returns
        return [f"echo: {message.text}"]

    class AnswersAfterAPoll:
        """b's view of the sink: the reply-status check answers only once b has polled
        (on a real network the check and the poll race; this makes the poll win)."""

        def __init__(self, inner: MemoryChannel) -> None:
            self.inner, self.name = inner, inner.name
            self.polls_before = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def delivered(self, reply_key: str) -> bool | None:
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: len(self.inner.polls) > self.polls_before, 5, "b's poll")
            return self.inner.delivered(reply_key)

    channel = MemoryChannel("memory")
    b_view = AnswersAfterAPoll(channel)
    router: dict[str, Machine] = {}
    a = Machine(10, channel, router, agent=slow_agent)
    b = Machine(20, b_view, router)
    router.update({a.id: a, b.id: b})
    a.peers(b)
    b.peers(a)
    try:
        a.dropped = True  # a's markers are lost, but for the prepared one of "fast"
        a.hold(1)
        slow = channel.post_user_message("t0", "slow", "c-slow-001")
        fast = channel.post_user_message("t1", "fast", "c-fast-001")
        key = f"memory:1/2:{fast}"

        def a_is_done_with_fast() -> bool:
            found = a.ledger.get(key)
            return found is not None and found.done and thinking.is_set()

        wait_for(a_is_done_with_fast, 10, "a's work")
        hand_prepared_marker(a, b, key)
        a.hold(None)
        router.pop(a.id)
        b_view.polls_before = len(channel.polls)
        b.hold(2)
        wait_for(lambda: all_answered(channel, {slow, fast}), 20, "b answers update 1 too")
        assert accepted(channel)[slow] == 1
    finally:
        a.stop()
        b.stop()


def test_a_check_answered_after_the_gate_closed_is_recorded_and_the_actor_lives() -> None:
    """b resumes a message a prepared (a's committed marker was lost); the gate closes
    while b's check is out, and the answer comes back to a machine that stands by."""
    channel = MemoryChannel("memory")
    answering = threading.Event()
    release = threading.Event()

    class SlowToSay:
        def __init__(self, inner: MemoryChannel) -> None:
            self.inner, self.name = inner, inner.name

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def delivered(self, reply_key: str) -> bool | None:
            answering.set()
            release.wait(20)
            return self.inner.delivered(reply_key)

    router: dict[str, Machine] = {}
    a = Machine(10, channel, router)
    b = Machine(20, SlowToSay(channel), router)
    router.update({a.id: a, b.id: b})
    a.peers(b)
    b.peers(a)
    try:
        a.dropped = True  # a's markers are lost but for the one pushed below
        a.hold(1)
        [mid] = post_many(channel, 1)
        key = f"memory:1/1:{mid}"
        wait_for(lambda: (e := a.ledger.get(key)) is not None and e.done, 10, "a is done")
        a.hold(None)
        hand_prepared_marker(a, b, key)
        b.hold(2)
        wait_for(answering.is_set, 10, "b's check")
        b.hold(None)
        wait_for(lambda: term_of(b) is None, 10, "b stands by")
        release.set()
        wait_for(lambda: b.counters.get("delivery.resumed_commit") == 1, 10, "the answer")
        assert b.ref.is_alive() and b.counters.get("delivery.errors") == 0
        assert accepted(channel)[mid] == 1
    finally:
        release.set()
        a.stop()
        b.stop()


def test_a_job_that_raises_something_unexpected_never_leaves_its_topic_stuck() -> None:
    def buggy(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        raise RuntimeError("a bug, not an AgentFailed")

    channel = MemoryChannel("memory")
    a = Machine(10, channel, {}, agent=buggy)
    try:
        a.hold(1)
        [mid] = post_many(channel, 1)
        wait_for(lambda: all_answered(channel, {mid}), 20, "an answer all the same")
        [text] = bot_texts(channel, "t0")
        assert text.startswith("[baton] the agent failed") and "RuntimeError" in text
    finally:
        a.stop()


@pytest.mark.parametrize("policy", ["resend", "skip"])
def test_a_429_waits_as_told_and_a_refused_connection_is_sent_again_never_ambiguous(
    policy: str,
) -> None:
    channel = MemoryChannel("memory")
    a = Machine(10, CannotSay(channel), {}, settings=Settings(ambiguous_policy=policy))
    try:
        channel.throttle_sends(20, retry_after_s=0.05)  # 20 consecutive 429s
        channel.refuse_sends(2)
        a.hold(1)
        ids = post_many(channel, 3)
        wait_for(lambda: all_answered(channel, ids), 30, "answered after the waits")
        wait_for(lambda: a.ledger.counts()["acked"] == 3, 10, "all done")
        assert set(accepted(channel).values()) == {1}  # nothing recorded unsent, or doubled
        assert sum(s["outcome"] == "throttled" for s in channel.sends) == 20
        assert a.counters.get("delivery.rate_limited") == 20
        assert a.counters.get("delivery.not_sent") == 2
        assert a.counters.get("delivery.ambiguous") == 0  # neither may have arrived
        view = a.ref.ask(GetDelivery(), timeout=10)
        assert view["alarm_counts"] == {"rate_limited": 20}
    finally:
        a.stop()


def test_a_reply_too_long_for_the_sink_goes_out_in_parts_each_once() -> None:
    channel = MemoryChannel("memory")

    def long_replies(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        return ["one", "m" * 4000 + "\n" + "n" * 4000, "three"]

    a = Machine(10, channel, {}, settings=Settings(), agent=long_replies)
    try:
        a.hold(1)
        [mid] = post_many(channel, 1)
        wait_for(lambda: a.ledger.counts()["acked"] == 1, 20, "done")
        assert bot_texts(channel, "t0") == ["one", "m" * 4000, "n" * 4000, "three"]
        assert [s["outcome"] for s in channel.sends if s["reply_to"] == mid] == ["accepted"] * 4
    finally:
        a.stop()


class FailingDisk:
    """A MemoryLedger whose every third write fails (as a full disk's would: nothing
    changes) until ``failures`` have, and whose first read back after one fails too."""

    WRITES = ("record", "begin", "fail", "prepare", "commit", "ack", "apply_marker")

    def __init__(self, failures: int) -> None:
        self.inner, self.left, self.writes, self.reads_failed = MemoryLedger(), failures, 0, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in self.WRITES:
            return method

        def write(*args: Any) -> Any:
            self.writes += 1
            if self.left and self.writes % 3 == 0:
                self.left -= 1
                raise LedgerError(f"{name}: disk full (injected)")
            return method(*args)

        return write

    def pending(self) -> list[Any]:
        if self.writes >= 3 and not self.reads_failed:
            self.reads_failed += 1
            raise LedgerError("pending: disk full (injected)")
        return self.inner.pending()  # type: ignore[no-any-return]


def test_failed_ledger_writes_stop_delivery_until_read_back_and_nothing_is_lost_or_doubled() -> (
    None
):
    channel = MemoryChannel("memory")
    disk = FailingDisk(failures=8)
    a = Machine(10, channel, {}, ledger=disk)
    try:
        a.hold(1)
        ids = post_many(channel, 9)
        wait_for(lambda: all_answered(channel, ids), 40, "answered despite the disk")
        wait_for(lambda: disk.inner.counts()["acked"] == 9, 10, "all done")
        assert disk.left == 0 and disk.reads_failed == 1  # every injected failure happened
        assert a.counters.get("delivery.errors") >= 8
        assert set(accepted(channel).values()) == {1}
        assert not [s for s in channel.sends if s["outcome"] != "accepted"]  # none again
        assert a.counters.get("delivery.diverged") == 0
        assert a.ref.is_alive()
    finally:
        a.stop()


def closed(m: Machine) -> list[bool]:
    """Which of ``m``'s stores refuse a read as closed: ledger, transcripts, buffer."""
    reads = (m.ledger.pending, m.transcripts.last_seqs, m.buffer.heads)
    out = []
    for read in reads:
        try:
            read()
            out.append(False)
        except BatonError as exc:
            out.append("closed" in str(exc))
    return out


def test_each_store_is_closed_by_the_actor_that_owns_it_on_stop_and_on_failure() -> None:
    """The DeliveryActor closes its ledger, the LiveTailActor its transcripts and buffer:
    on a clean stop, and when a message raised out of them (pykka's on_failure)."""
    channel = MemoryChannel("memory")
    a, b = Machine(14, channel, {}), Machine(16, channel, {})
    try:
        assert closed(a) == closed(b) == [False, False, False]
        a.ref.tell(object())  # a bug: it raises out of the actor, which stops
        a.tail.tell(object())
        wait_for(lambda: not a.ref.is_alive() and not a.tail.is_alive(), 30, "both failed")
        assert closed(a) == [True, True, True]
        b.stop()
        assert closed(b) == [True, True, True]
    finally:
        a.stop()
        b.stop()
