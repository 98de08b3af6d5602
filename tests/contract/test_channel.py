"""One Channel contract suite, run against MemoryChannel and BotApiChannel("local",
fencing=True) talking to a real ChatServer (waitress on loopback, SQLite in tmp_path)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from baton.channels.base import (
    Channel,
    ChannelError,
    ChannelRejected,
    InboundMessage,
    OutboundReply,
    PollConflict,
    SkippedUpdate,
    Update,
)
from baton.channels.botapi import BotApiChannel
from baton.channels.chat_server import ChatServer
from baton.channels.memory import MemoryChannel
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(30)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Harness:
    channel: Channel
    second_poller: Callable[[], Channel]  # another machine polling the same chat
    messages: Callable[[str], list[dict[str, Any]]]  # as GET /api/topics/<t>/messages
    sends: Callable[[], list[dict[str, Any]]]  # as GET /api/sends
    waiting: Callable[[], int]  # polls parked in a long poll now
    # post as the user, a message of any kind: body as POST /api/topics/<t>/messages takes
    # it ({"kind", "text" | "caption" | "emoji", "client_id"}); the message id, or
    # ChannelError when refused
    post: Callable[[str, dict[str, Any]], int]
    edit: Callable[[str, int, str], int]  # edit a user's text message: its update id


def _memory_post(mem: MemoryChannel) -> Callable[[str, dict[str, Any]], int]:
    def post(topic: str, body: dict[str, Any]) -> int:
        return mem.post_user_message(
            topic,
            body.get("text", ""),
            body["client_id"],
            kind=body.get("kind", "text"),
            caption=body.get("caption"),
            emoji=body.get("emoji"),
        )

    return post


def _post(url: str, body: dict[str, Any], user_token: str) -> Any:
    """POST JSON; an HTTP error is a ChannelError, as the adapter and the twin raise."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {user_token}"}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with _OPENER.open(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ChannelError(f"HTTP {exc.code}: {exc.read()!r}") from None


@pytest.fixture(params=["memory", "local"])
def chat(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "memory":
        mem = MemoryChannel()
        yield Harness(
            mem,
            lambda: mem,
            mem.messages,
            lambda: mem.sends,
            lambda: mem.waiting_polls,
            _memory_post(mem),
            mem.edit_user_message,
        )
        return
    server = ChatServer(tmp_path / "chat.sqlite").start()
    try:
        url, user = server.url, server.user_token

        def adapter(poller: str) -> BotApiChannel:
            return BotApiChannel(
                "local", url, server.bot_token, fencing=True, poller_id=poller, user_token=user
            )

        def post(path: str, body: dict[str, Any]) -> Any:
            return _post(f"{url}{path}", body, user)

        yield Harness(
            adapter("m_one"),
            lambda: adapter("m_two"),
            lambda topic: server.api(f"/api/topics/{topic}/messages")["messages"],
            lambda: server.api("/api/sends")["sends"],
            lambda: int(server.api("/api/polls")["waiting"]),
            lambda topic, body: int(post(f"/api/topics/{topic}/messages", body)["message_id"]),
            lambda topic, mid, text: int(
                post(f"/api/topics/{topic}/messages/{mid}/edit", {"text": text})["update_id"]
            ),
        )
    finally:
        server.stop()


def _texts(updates: list[Update]) -> list[str]:
    return [u.text for u in updates if isinstance(u, InboundMessage)]


def _reply(msg: InboundMessage, epoch: int, key: str, text: str = "ok") -> OutboundReply:
    return OutboundReply(msg.chat_id, msg.thread_id, msg.message_id, text, epoch, key)


def _one_message(chat: Harness, topic: str = "t", text: str = "hi") -> InboundMessage:
    chat.channel.post_user_message(topic, text, f"c-{topic}-{text}")
    updates = chat.channel.poll(None, 0)
    found = [u for u in updates if isinstance(u, InboundMessage) and u.text == text]
    assert len(found) == 1
    return found[0]


KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64


class _Poll(threading.Thread):
    """poll() in a thread; the test waits for it to be parked, then acts."""

    def __init__(self, channel: Channel, offset: int | None, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.channel, self.offset, self.timeout_s = channel, offset, timeout_s
        self.result: list[Update] | None = None
        self.error: BaseException | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        start = time.monotonic()
        try:
            self.result = self.channel.poll(self.offset, self.timeout_s)
        except BaseException as exc:
            self.error = exc
        self.elapsed = time.monotonic() - start


def test_updates_are_redelivered_until_an_offset_confirms_them(chat: Harness) -> None:
    for text in ("one", "two", "three"):
        chat.channel.post_user_message("t", text, text)
    first = chat.channel.poll(None, 0)
    assert _texts(first) == ["one", "two", "three"]
    assert _texts(chat.channel.poll(None, 0)) == ["one", "two", "three"]  # not confirmed yet
    assert _texts(chat.channel.poll(first[0].update_id + 1, 0)) == ["two", "three"]
    assert _texts(chat.channel.poll(None, 0)) == ["two", "three"]  # "one" is gone for good
    assert _texts(chat.channel.poll(first[0].update_id, 0)) == ["two", "three"]
    assert chat.channel.poll(first[-1].update_id + 1, 0) == []
    assert chat.channel.poll(None, 0) == []


def test_updates_come_in_order_with_growing_ids(chat: Harness) -> None:
    for n, topic in enumerate(["alpha", "beta", "alpha", "gamma", "beta"]):
        chat.channel.post_user_message(topic, f"m{n}", f"c{n}")
    updates = chat.channel.poll(None, 0)
    msgs = [u for u in updates if isinstance(u, InboundMessage)]
    assert [m.text for m in msgs] == ["m0", "m1", "m2", "m3", "m4"]
    assert [m.thread_id for m in msgs] == [1, 2, 1, 3, 2]  # stable thread per topic name
    ids = [m.update_id for m in msgs]
    assert ids == sorted(ids) and len(set(ids)) == 5
    mids = [m.message_id for m in msgs]
    assert mids == sorted(mids) and len(set(mids)) == 5
    assert all(m.chat_id == 1 and m.channel == chat.channel.name for m in msgs)
    assert all(m.sender == "user" for m in msgs)
    assert msgs[0].key == f"{chat.channel.name}:1/1:{msgs[0].message_id}"


def test_a_long_poll_returns_when_a_message_arrives(chat: Harness) -> None:
    poll = _Poll(chat.channel, None, 10)
    poll.start()
    try:
        wait_for(chat.waiting, 5, "the poll to wait")
        chat.channel.post_user_message("t", "wake up", "w")
    finally:
        poll.join(10)
    assert not poll.is_alive() and poll.error is None
    assert poll.result is not None and _texts(poll.result) == ["wake up"]
    assert poll.elapsed < 5


def test_a_long_poll_without_messages_waits_its_timeout_then_returns_nothing(
    chat: Harness,
) -> None:
    start = time.monotonic()
    assert chat.channel.poll(None, 1) == []
    assert 0.9 <= time.monotonic() - start < 5


def test_a_new_poll_ends_a_waiting_one_with_a_conflict(chat: Harness) -> None:
    chat.channel.post_user_message("t", "seen", "s")
    offset = chat.channel.poll(None, 0)[-1].update_id + 1
    waiting = _Poll(chat.channel, offset, 10)
    waiting.start()
    try:
        wait_for(chat.waiting, 5, "the first poll to wait")
        assert chat.second_poller().poll(offset, 0) == []
    finally:
        waiting.join(10)
    assert isinstance(waiting.error, PollConflict)
    assert waiting.elapsed < 5


def test_a_stale_epoch_is_refused_and_delivers_nothing(chat: Harness) -> None:
    msg = _one_message(chat)
    assert chat.channel.send(_reply(msg, 3, KEY_A)).status == "accepted"
    stale = chat.channel.send(_reply(msg, 2, KEY_B, "from the past"))
    assert (stale.status, stale.highest_epoch, stale.message_id) == ("stale", 3, None)
    assert chat.channel.send(_reply(msg, 5, KEY_C)).status == "accepted"
    again = chat.channel.send(_reply(msg, 3, "d" * 64))
    assert (again.status, again.highest_epoch) == ("stale", 5)
    bot = [m for m in chat.messages("t") if m["from"] == "bot"]
    assert [(m["text"], m["epoch"]) for m in bot] == [("ok", 3), ("ok", 5)]
    assert not chat.channel.delivered(KEY_B)
    outcomes = [(s["reply_key"], s["epoch"], s["outcome"]) for s in chat.sends()]
    assert outcomes == [
        (KEY_A, 3, "accepted"),
        (KEY_B, 2, "stale"),
        (KEY_C, 5, "accepted"),
        ("d" * 64, 3, "stale"),
    ]


def test_a_repeated_reply_key_returns_the_original_and_delivers_nothing(chat: Harness) -> None:
    msg = _one_message(chat)
    first = chat.channel.send(_reply(msg, 1, KEY_A, "the answer"))
    assert first.status == "accepted" and first.message_id is not None
    again = chat.channel.send(_reply(msg, 1, KEY_A, "the answer"))
    later = chat.channel.send(_reply(msg, 2, KEY_A, "the answer"))  # a new holder resends
    assert (again.status, again.message_id) == ("repeat", first.message_id)
    assert (later.status, later.message_id) == ("repeat", first.message_id)
    bot = [m for m in chat.messages("t") if m["from"] == "bot"]
    assert [(m["message_id"], m["reply_to"], m["reply_key"]) for m in bot] == [
        (first.message_id, msg.message_id, KEY_A)
    ]
    assert [s["outcome"] for s in chat.sends()] == ["accepted", "repeat", "repeat"]
    assert [s["message_id"] for s in chat.sends()] == [first.message_id] * 3
    # the repeat at epoch 2 raised the highest epoch: epoch 1 is stale now
    assert chat.channel.send(_reply(msg, 1, KEY_B)).status == "stale"


def test_a_stale_epoch_is_refused_even_for_a_delivered_key(chat: Harness) -> None:
    msg = _one_message(chat)
    assert chat.channel.send(_reply(msg, 1, KEY_A)).status == "accepted"
    assert chat.channel.send(_reply(msg, 2, KEY_B)).status == "accepted"
    assert chat.channel.send(_reply(msg, 1, KEY_A)).status == "stale"


def test_delivered_says_whether_a_reply_key_was_delivered(chat: Harness) -> None:
    msg = _one_message(chat)
    assert chat.channel.delivered(KEY_A) is False
    chat.channel.send(_reply(msg, 1, KEY_A))
    assert chat.channel.delivered(KEY_A) is True
    assert chat.channel.delivered(KEY_B) is False


def test_posting_twice_with_one_client_id_posts_once(chat: Harness) -> None:
    first = chat.channel.post_user_message("t", "hello", "client-1")
    assert chat.channel.post_user_message("t", "hello", "client-1") == first
    other = chat.channel.post_user_message("t", "hello", "client-2")
    assert other > first
    assert [m["message_id"] for m in chat.messages("t")] == [first, other]
    assert [u.message_id for u in chat.channel.poll(None, 0)] == [first, other]


def test_a_send_to_an_unknown_thread_is_an_error_and_logs_nothing(chat: Harness) -> None:
    msg = _one_message(chat)
    with pytest.raises(ChannelRejected):  # refused for good: nothing was delivered
        chat.channel.send(OutboundReply(1, 99, msg.message_id, "lost", 1, KEY_A))
    with pytest.raises(ChannelRejected):
        chat.channel.send(OutboundReply(7, msg.thread_id, msg.message_id, "lost", 1, KEY_A))
    assert chat.sends() == []
    assert chat.channel.delivered(KEY_A) is False


def test_a_bad_topic_name_or_empty_text_is_an_error(chat: Harness) -> None:
    with pytest.raises(ChannelError):
        chat.channel.post_user_message("no spaces", "x", "c")
    with pytest.raises(ChannelError):
        chat.channel.post_user_message("t", "", "c")
    assert chat.channel.poll(None, 0) == []


def test_racing_sends_of_one_reply_deliver_it_once(chat: Harness) -> None:
    msg = _one_message(chat)
    outcomes: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        outcome = chat.channel.send(_reply(msg, 1, KEY_A))
        with lock:
            outcomes.append(outcome.status)

    threads = [threading.Thread(target=send, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["accepted"] + ["repeat"] * 7
    assert len([m for m in chat.messages("t") if m["from"] == "bot"]) == 1


# --- messages of every kind, and edits ---------------------------------------------------

THUMBS_UP = "\N{THUMBS UP SIGN}"


def test_messages_of_every_kind_come_out_with_their_kind_and_words(chat: Harness) -> None:
    posts: list[dict[str, Any]] = [
        {"kind": "photo", "caption": "my cat"},
        {"kind": "sticker", "emoji": "\U0001f600"},
        {"kind": "sticker"},  # the service's default emoji
        {"kind": "photo"},  # no caption
        {"kind": "document", "caption": "the report"},
        {"kind": "voice"},
        {"text": "plain"},
    ]
    ids = [chat.post("t", {**body, "client_id": f"c{n}"}) for n, body in enumerate(posts)]
    name = chat.channel.name
    expected = [
        ("photo", "my cat"),
        ("sticker", "\U0001f600"),
        ("sticker", THUMBS_UP),
        ("photo", ""),
        ("document", "the report"),
        ("voice", ""),
        ("text", "plain"),
    ]
    # the same ids on both: a fresh chat, its first topic, every post one update
    assert ids == [1, 2, 3, 4, 5, 6, 7]
    assert chat.channel.poll(None, 0) == [
        InboundMessage(name, n, 1, 1, n, text, "user", kind)
        for n, (kind, text) in enumerate(expected, 1)
    ]
    listed = [(m["kind"], m["text"], m["caption"]) for m in chat.messages("t")]
    assert listed[0] == ("photo", None, "my cat")
    assert listed[1] == ("sticker", None, None)
    assert listed[-1] == ("text", "plain", None)


def test_a_posted_kind_is_idempotent_per_client_id(chat: Harness) -> None:
    first = chat.post("t", {"kind": "photo", "caption": "once", "client_id": "p1"})
    assert chat.post("t", {"kind": "photo", "caption": "once", "client_id": "p1"}) == first
    assert [u.message_id for u in chat.channel.poll(None, 0)] == [first]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "photo", "text": "a photo has a caption, not a text"},
        {"kind": "sticker", "caption": "a sticker has no caption"},
        {"kind": "photo", "emoji": THUMBS_UP},
        {"kind": "video"},  # the chat service cannot post this kind
        {"kind": "photo", "caption": ""},
    ],
    ids=repr,
)
def test_a_message_the_service_refuses_is_refused_by_both(
    chat: Harness, body: dict[str, Any]
) -> None:
    with pytest.raises(ChannelError):
        chat.post("t", {**body, "client_id": "refused"})
    assert chat.channel.poll(None, 0) == []


def test_an_edit_is_an_edited_update_skipped_after_the_message(chat: Harness) -> None:
    mid = chat.post("t", {"text": "before", "client_id": "e1"})
    edit_uid = chat.edit("t", mid, "after")
    assert edit_uid == 2
    name = chat.channel.name
    updates = chat.channel.poll(None, 0)
    assert updates == [
        InboundMessage(name, 1, 1, 1, mid, "before", "user"),  # the text it was made with
        SkippedUpdate(edit_uid, "edited"),
    ]
    assert [m["text"] for m in chat.messages("t")] == ["after"]
    assert chat.channel.poll(edit_uid + 1, 0) == []  # the cursor passes the edit


def test_only_a_users_text_message_can_be_edited(chat: Harness) -> None:
    photo = chat.post("t", {"kind": "photo", "caption": "c", "client_id": "e2"})
    with pytest.raises(ChannelError):
        chat.edit("t", photo, "a photo is not edited")
    with pytest.raises(ChannelError):
        chat.edit("t", photo + 100, "no such message")
    with pytest.raises(ChannelError):
        chat.edit("elsewhere", photo, "another topic")
    msg = [u for u in chat.channel.poll(None, 0) if isinstance(u, InboundMessage)]
    assert [(m.kind, m.text) for m in msg] == [("photo", "c")]
    reply = chat.channel.send(_reply(msg[0], 1, KEY_A, "nice"))
    assert reply.message_id is not None
    with pytest.raises(ChannelError):
        chat.edit("t", reply.message_id, "a bot's message is not edited")
    assert [type(u) for u in chat.channel.poll(None, 0)] == [InboundMessage]


def test_check_says_the_channel_answers(chat: Harness) -> None:
    assert "answers" in chat.channel.check(5.0)
