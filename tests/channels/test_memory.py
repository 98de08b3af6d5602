"""MemoryChannel's own hooks (its Channel behaviour is in tests/contract/test_channel.py):
injected poll and send failures, injected raw updates, inspection."""

from __future__ import annotations

import pytest

from baton.adapters.metrics import Counters
from baton.channels.base import ChannelError, InboundMessage, OutboundReply, SkippedUpdate
from baton.channels.memory import MemoryChannel

pytestmark = pytest.mark.timeout(30)

KEY = "f" * 64


def _posted(chat: MemoryChannel) -> InboundMessage:
    chat.post_user_message("t", "question", "c1")
    [msg] = chat.poll(None, 0)
    assert isinstance(msg, InboundMessage)
    return msg


def test_failed_polls_raise_and_confirm_nothing() -> None:
    chat = MemoryChannel()
    msg = _posted(chat)
    chat.fail_polls(2)
    for _ in range(2):
        with pytest.raises(ChannelError):
            chat.poll(msg.update_id + 1, 0)
    assert chat.poll(None, 0) == [msg]  # the failed polls' offset confirmed nothing
    assert chat.poll(msg.update_id + 1, 0) == []


def test_a_send_that_fails_before_delivery_delivers_nothing() -> None:
    chat = MemoryChannel()
    msg = _posted(chat)
    reply = OutboundReply(msg.chat_id, msg.thread_id, msg.message_id, "answer", 1, KEY)
    chat.fail_sends(1, delivered=False)
    with pytest.raises(ChannelError):
        chat.send(reply)
    assert chat.delivered(KEY) is False and chat.sends == []
    assert chat.send(reply).status == "accepted"


def test_a_send_whose_answer_is_lost_was_delivered_and_repeats() -> None:
    chat = MemoryChannel()
    msg = _posted(chat)
    reply = OutboundReply(msg.chat_id, msg.thread_id, msg.message_id, "answer", 1, KEY)
    chat.fail_sends(1, delivered=True)
    with pytest.raises(ChannelError):
        chat.send(reply)
    assert chat.delivered(KEY) is True
    again = chat.send(reply)
    assert again.status == "repeat"
    assert [s["outcome"] for s in chat.sends] == ["accepted", "repeat"]
    assert [m["text"] for m in chat.messages("t")] == ["question", "answer"]


def test_injected_updates_are_parsed_like_the_adapter_parses_them() -> None:
    counters = Counters()
    chat = MemoryChannel("local", counters=counters)
    good = {"message": {"message_id": 50, "chat": {"id": 1}, "message_thread_id": 1, "text": "ok"}}
    good["message"]["is_topic_message"] = True
    assigned = chat.inject_update(good)
    assert assigned == 1
    assert chat.inject_update({"update_id": 10, "message": {"message_id": "x"}}) == 10
    assert chat.inject_update("garbage") == 11  # no usable id: dropped at every poll
    assert chat.inject_update({"update_id": 12}) == 12
    chat.post_user_message("t", "after", "c")
    updates = chat.poll(None, 0)
    assert updates[0] == InboundMessage("local", 1, 1, 1, 50, "ok", "")
    assert updates[1:3] == [SkippedUpdate(10, "malformed"), SkippedUpdate(12, "no message")]
    assert isinstance(updates[3], InboundMessage) and updates[3].update_id == 13
    assert counters.snapshot() == {
        "channel.dropped_no_id": 1,
        "channel.skipped.malformed": 1,
        "channel.skipped.no_message": 1,
    }
    assert chat.poll(14, 0) == []


def test_inspection_lists_what_the_service_lists() -> None:
    chat = MemoryChannel()
    msg = _posted(chat)
    chat.send(OutboundReply(1, msg.thread_id, msg.message_id, "answer", 2, KEY))
    [user, bot] = chat.messages("t")
    assert (user["from"], bot["from"], bot["reply_to"], bot["epoch"], bot["reply_key"]) == (
        "user",
        "bot",
        msg.message_id,
        2,
        KEY,
    )
    [send] = chat.sends
    assert set(send) == {
        "seq",
        "time",
        "reply_key",
        "epoch",
        "outcome",
        "chat_id",
        "thread_id",
        "reply_to",
        "message_id",
        "poller",
    }
    assert chat.messages("unknown") == []
    assert chat.thread_id("t") == 1 and chat.thread_id("unknown") is None
    assert [p["outcome"] for p in chat.polls] == ["ok"]
