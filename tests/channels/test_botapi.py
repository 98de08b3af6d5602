"""BotApiChannel: parse_update on every kind of JSON value, and the adapter against a
small misbehaving HTTP server on loopback (5xx, garbage, hangs, trickles, conflicts),
against the real chat service in Telegram mode, and open_channel."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.adapters.metrics import Counters
from baton.channels import open_channel
from baton.channels.base import (
    ChannelError,
    ChannelRejected,
    ChannelUnsupported,
    InboundMessage,
    NotDelivered,
    OutboundReply,
    PollConflict,
    RateLimited,
    SkippedUpdate,
    WebhookActive,
)
from baton.channels.botapi import BotApiChannel, parse_update, parse_updates
from baton.channels.chat_server import ChatServer
from baton.channels.chat_store import user_update
from baton.core.errors import ConfigError

pytestmark = pytest.mark.timeout(30)

# --- parse_update -----------------------------------------------------------------------


def _msg(**overrides: Any) -> dict[str, Any]:
    message = {
        "message_id": 7,
        "message_thread_id": 3,
        "is_topic_message": True,
        "chat": {"id": -100, "type": "supergroup"},
        "from": {"id": 42, "username": "ann"},
        "text": "hello",
    }
    message.update(overrides)
    return {"update_id": 5, "message": {k: v for k, v in message.items() if v is not _DROP}}


_DROP = object()

NO_ID: list[object] = [
    None,
    True,
    3,
    "update",
    [],
    [{"update_id": 1}],
    {},
    {"update_id": None},
    {"update_id": "5"},
    {"update_id": 5.0},
    {"update_id": True},
    {"update_id": False, "message": _msg()["message"]},
    {"message": _msg()["message"]},
]


@pytest.mark.parametrize("raw", NO_ID, ids=repr)
def test_an_update_without_an_integer_id_is_dropped(raw: object) -> None:
    assert parse_update(raw, "local") is None


SKIPPED: list[tuple[object, str]] = [
    ({"update_id": 5}, "no message"),
    ({"update_id": 5, "message": None}, "no message"),
    ({"update_id": 5, "edited_message": _msg()["message"]}, "edited"),
    ({"update_id": 5, "message": None, "edited_message": _msg()["message"]}, "edited"),
    ({"update_id": 5, "edited_message": None}, "no message"),
    ({"update_id": 5, "channel_post": _msg()["message"]}, "no message"),
    ({"update_id": 5, "message": "hello"}, "malformed"),
    ({"update_id": 5, "message": []}, "malformed"),
    (_msg(message_id="7"), "malformed"),
    (_msg(message_id=True), "malformed"),
    (_msg(message_id=_DROP), "malformed"),
    (_msg(chat=_DROP), "malformed"),
    (_msg(chat=-100), "malformed"),
    (_msg(chat={"id": "-100"}), "malformed"),
    (_msg(chat={"id": False}), "malformed"),
    (_msg(message_thread_id="3"), "malformed"),
    (_msg(message_thread_id=3.5), "malformed"),
    (_msg(text=12), "malformed"),
    (_msg(text=["hello"]), "malformed"),
    (_msg(text=_DROP, photo={"file_id": "x"}), "malformed"),  # photo is a list of sizes
    (_msg(text=_DROP, photo=[], caption=7), "malformed"),
    (_msg(text=_DROP, document=["x"]), "malformed"),
    (_msg(text=_DROP, voice="x", caption="hi"), "malformed"),
    (_msg(text=_DROP, sticker="x"), "malformed"),
    (_msg(text=_DROP, sticker={"file_id": "x", "emoji": 1}), "malformed"),
    (_msg(text=_DROP, new_chat_members=[{"id": 1}]), "service"),
    (_msg(text=_DROP, forum_topic_created={"name": "t", "icon_color": 1}), "service"),
    (_msg(text=None, pinned_message={"message_id": 1}), "service"),
]


@pytest.mark.parametrize(("raw", "reason"), SKIPPED, ids=lambda v: repr(v)[:60])
def test_an_update_with_nothing_to_answer_is_skipped_with_its_id(raw: object, reason: str) -> None:
    assert parse_update(raw, "local") == SkippedUpdate(5, reason)


def test_a_text_message_becomes_an_inbound_message() -> None:
    assert parse_update(_msg(), "telegram") == InboundMessage(
        channel="telegram",
        update_id=5,
        chat_id=-100,
        thread_id=3,
        message_id=7,
        text="hello",
        sender="ann",
        kind="text",
    )


_FILE = {"file_id": "f", "file_unique_id": "u"}
KINDS: list[tuple[dict[str, Any], str, str]] = [
    ({"photo": [{**_FILE, "width": 90, "height": 90}], "caption": "my cat"}, "photo", "my cat"),
    ({"photo": [_FILE, _FILE]}, "photo", ""),
    ({"photo": [], "caption": "no sizes"}, "photo", "no sizes"),
    (
        {"document": {**_FILE, "file_name": "a.pdf"}, "caption": "the report"},
        "document",
        "the report",
    ),
    ({"voice": {**_FILE, "duration": 2}}, "voice", ""),
    ({"voice": {**_FILE, "duration": 2}, "caption": "listen"}, "voice", "listen"),
    ({"video": {**_FILE, "duration": 5}, "caption": "look"}, "video", "look"),
    ({"audio": {**_FILE, "duration": 200}, "caption": "a song"}, "audio", "a song"),
    # Telegram sets "document" too on an animation, for older clients.
    ({"animation": _FILE, "document": _FILE, "caption": "lol"}, "animation", "lol"),
    ({"sticker": {**_FILE, "emoji": "\U0001f44d"}}, "sticker", "\U0001f44d"),
    ({"sticker": _FILE}, "sticker", ""),
    ({"sticker": {**_FILE, "emoji": None}}, "sticker", ""),
    ({"location": {"latitude": 52.5, "longitude": 13.4}}, "other", ""),
    ({"poll": {"id": "p", "question": "?", "options": []}}, "other", ""),
    ({"contact": {"phone_number": "+1", "first_name": "A"}, "caption": 7}, "other", ""),
    ({}, "other", ""),
    ({"text": None, "photo": [_FILE], "caption": "cap"}, "photo", "cap"),
    ({"text": "wins", "photo": [_FILE], "caption": "cap"}, "text", "wins"),
]


@pytest.mark.parametrize(("content", "kind", "text"), KINDS, ids=lambda v: repr(v)[:50])
def test_a_message_of_every_kind_becomes_an_inbound_message(
    content: dict[str, Any], kind: str, text: str
) -> None:
    """Its text is the text, else the caption, else a sticker's emoji, else empty."""
    raw = _msg(text=_DROP)
    raw["message"].update(content)
    assert parse_update(raw, "local") == InboundMessage(
        channel="local",
        update_id=5,
        chat_id=-100,
        thread_id=3,
        message_id=7,
        text=text,
        sender="ann",
        kind=kind,
    )


def test_a_caption_with_lone_surrogates_is_repaired_and_counted() -> None:
    raw = json.loads(
        '{"update_id": 5, "message": {"message_id": 7, "chat": {"id": 1},'
        ' "photo": [], "caption": "a\\ud800b"}}'
    )
    counters = Counters()
    [update] = parse_updates([raw], "local", counters)
    assert isinstance(update, InboundMessage)
    assert (update.kind, update.text) == ("photo", "a\ufffdb")
    assert counters.get("channel.replaced_text") == 1


def test_the_chat_services_shapes_parse_as_their_kinds() -> None:
    """The raw updates the bundled chat service makes (chat_store.user_update)."""
    cases = [
        (user_update(1, 10, 2, 0, "", kind="photo", caption="c"), ("photo", "c")),
        (user_update(1, 10, 2, 0, "", kind="document"), ("document", "")),
        (user_update(1, 10, 2, 0, "", kind="voice", caption="v"), ("voice", "v")),
        (
            user_update(1, 10, 2, 0, "", kind="sticker", emoji="\U0001f600"),
            ("sticker", "\U0001f600"),
        ),
        (user_update(1, 10, 2, 0, "", kind="sticker"), ("sticker", "\U0001f44d")),
        (user_update(1, 10, 2, 0, "hi"), ("text", "hi")),
    ]
    for raw, expected in cases:
        update = parse_update(raw, "local")
        assert isinstance(update, InboundMessage), raw
        assert (update.kind, update.text, update.thread_id, update.message_id) == (*expected, 2, 10)
    edit = user_update(3, 10, 2, 0, "changed", edit_date=5)
    assert parse_update(edit, "local") == SkippedUpdate(3, "edited")


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ({"id": 42, "username": "ann"}, "ann"),
        ({"id": 42}, "42"),
        ({"id": 42, "username": ""}, "42"),
        ({"id": 42, "username": 9}, "42"),
        ({"id": True}, ""),
        ({}, ""),
        ("ann", ""),
        (_DROP, ""),
    ],
)
def test_the_sender_is_the_username_else_the_id_else_empty(sender: object, expected: str) -> None:
    update = parse_update(_msg(**{"from": sender}), "local")
    assert isinstance(update, InboundMessage) and update.sender == expected


def test_no_thread_is_thread_zero() -> None:
    for thread in (_DROP, None):
        update = parse_update(_msg(message_thread_id=thread), "local")
        assert isinstance(update, InboundMessage) and update.thread_id == 0


def test_a_thread_outside_a_forum_topic_is_no_topic_of_its_own() -> None:
    """Telegram sets message_thread_id on plain replies in a group that is no forum;
    only is_topic_message makes the thread a topic (else every reply chain would be one)."""
    for flag in (_DROP, False, None):
        update = parse_update(_msg(is_topic_message=flag), "telegram")
        assert isinstance(update, InboundMessage) and update.thread_id == 0


def test_lone_surrogates_become_replacement_characters_and_are_counted() -> None:
    raw = json.loads(
        '{"update_id": 5, "message": {"message_id": 7, "chat": {"id": 1},'
        ' "text": "a\\ud800b\\udfffc \\ud83d\\ude00"}}'
    )
    counters = Counters()
    [update] = parse_updates([raw, _msg()], "local", counters)[:1]
    assert isinstance(update, InboundMessage)
    assert update.text == "a\ufffdb\ufffdc \U0001f600"
    update.text.encode("utf-8")  # valid Unicode now
    assert counters.get("channel.replaced_text") == 1


def test_huge_and_odd_texts_pass_unchanged() -> None:
    for text in ("x" * 5_000_000, "", "\x00nul", "\u202e rtl", "\U0001f600" * 1000):
        update = parse_update(_msg(text=text), "local")
        assert isinstance(update, InboundMessage) and update.text == text


def test_parse_updates_counts_what_it_drops_and_skips() -> None:
    counters = Counters()
    edited = {"update_id": 8, "edited_message": _msg()["message"]}
    service = _msg(text=_DROP, left_chat_member={"id": 9})
    raws = [{"x": 1}, 7, _msg(text=_DROP), {"update_id": 6}, _msg(chat=1), edited, service]
    out = parse_updates([*raws, _msg()], "local", counters)
    assert [type(u).__name__ for u in out] == [
        "InboundMessage",  # a message with no text and no media: "other"
        "SkippedUpdate",
        "SkippedUpdate",
        "SkippedUpdate",
        "SkippedUpdate",
        "InboundMessage",
    ]
    assert counters.snapshot() == {
        "channel.dropped_no_id": 2,
        "channel.skipped.malformed": 1,
        "channel.skipped.no_message": 1,
        "channel.skipped.edited": 1,
        "channel.skipped.service": 1,
    }


# --- a misbehaving Bot API ----------------------------------------------------------------


class FakeBotApi:
    """A Bot API on loopback that answers what the test scripts: ``answer(method, body,
    headers) -> (status, bytes)``, or the modes "hang", "trickle" and "close"."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.answer: Callable[[str, Any], tuple[int, bytes] | str] = lambda m, b: (
            200,
            b'{"ok": true, "result": []}',
        )
        self.release = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                method = self.path.rsplit("/", 1)[-1]
                fake.requests.append((self.path, body, dict(self.headers)))
                answer = fake.answer(method, body)
                if answer == "hang":
                    fake.release.wait(20)
                elif answer == "close":
                    self.close_connection = True
                elif answer == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    while not fake.release.wait(0.05):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                else:
                    assert isinstance(answer, tuple)
                    status, payload = answer
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = False  # server_close() joins the handlers

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (broken pipe) is what some tests do

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def respond(self, status: int, doc: Any) -> None:
        payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.answer = lambda method, body: (status, payload)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    api = FakeBotApi()
    api.thread.start()
    try:
        yield api
    finally:
        api.close()


def _adapter(fake: FakeBotApi, *, fencing: bool = True, counters: Counters | None = None):
    name = "local" if fencing else "telegram"
    return BotApiChannel(
        name,
        fake.url,
        "123:SECRET",
        fencing=fencing,
        poller_id="m_x",
        timeout_s=0.5,
        counters=counters,
    )


REPLY = OutboundReply(chat_id=1, thread_id=2, reply_to=3, text="hi", epoch=4, reply_key="k" * 64)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            500,
            {"ok": False, "error_code": 500, "description": "Internal Server Error"},
            "server_error",
        ),
        (502, b"<html>bad gateway</html>", "server_error"),
        (200, b"garbage, not JSON", "bad_response"),
        (200, b"\xff\xfe\x00", "bad_response"),
        (200, {"ok": False}, "bad_response"),
        (200, {"ok": True, "result": {"updates": []}}, "bad_response"),
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: x"}, "refused"),
    ],
)
def test_a_poll_that_gets_no_sensible_answer_is_a_channel_error(
    fake: FakeBotApi, status: int, body: Any, kind: str
) -> None:
    counters = Counters()
    fake.respond(status, body)
    with pytest.raises(ChannelError) as info:
        _adapter(fake, counters=counters).poll(5, 0)
    assert not isinstance(info.value, PollConflict)
    assert "SECRET" not in info.value.detail and "getUpdates" in info.value.detail
    assert counters.snapshot() == {f"channel.errors.{kind}": 1}


def test_a_poll_asks_for_the_offset_limit_and_timeout_and_says_who_polls(fake: FakeBotApi) -> None:
    fake.respond(200, {"ok": True, "result": [_msg()]})
    assert [u.message_id for u in _adapter(fake).poll(5, 1.9)] == [7]  # type: ignore[union-attr]
    _adapter(fake).poll(None, 0)
    (path1, body1, headers1), (_, body2, _) = fake.requests
    assert path1 == "/bot123:SECRET/getUpdates"
    assert body1 == {"offset": 5, "limit": 100, "timeout": 1}
    assert body2 == {"limit": 100, "timeout": 0}
    assert headers1["X-Baton-Machine"] == "m_x"


def test_a_409_on_poll_is_a_poll_conflict(fake: FakeBotApi) -> None:
    fake.respond(409, {"ok": False, "error_code": 409, "description": "Conflict: terminated"})
    with pytest.raises(PollConflict):
        _adapter(fake).poll(None, 0)


def test_a_webhook_on_the_bot_is_a_webhook_conflict(fake: FakeBotApi) -> None:
    counters = Counters()
    description = "Conflict: can't use getUpdates method while webhook is active"
    fake.respond(409, {"ok": False, "error_code": 409, "description": description})
    with pytest.raises(WebhookActive):
        _adapter(fake, counters=counters).poll(None, 0)
    assert counters.get("channel.errors.webhook") == 1


def test_a_refused_connection_delivered_nothing() -> None:
    fake = FakeBotApi()
    fake.server.server_close()  # bound once, now closed: nobody listens on the port
    channel = BotApiChannel("local", fake.url, "t", fencing=False, timeout_s=0.5)
    with pytest.raises(NotDelivered, match="cannot reach"):
        channel.poll(None, 0)
    with pytest.raises(NotDelivered):
        channel.send(REPLY)


@pytest.mark.parametrize(
    ("parameters", "wait"),
    [
        ({"retry_after": 5}, 5.0),
        ({}, 1.0),
        ({"retry_after": "5"}, 1.0),
        ({"retry_after": 10**9}, 3600.0),
    ],
)
def test_a_429_delivered_nothing_and_says_how_long_to_wait(
    fake: FakeBotApi, parameters: dict[str, Any], wait: float
) -> None:
    body = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 5"}
    fake.respond(429, body | {"parameters": parameters})
    for fencing in (True, False):
        with pytest.raises(RateLimited) as info:
            _adapter(fake, fencing=fencing).send(REPLY)
        assert info.value.retry_after_s == wait and isinstance(info.value, NotDelivered)


@pytest.mark.parametrize("mode", ["hang", "trickle", "close"])
def test_a_server_that_hangs_trickles_or_hangs_up_is_a_channel_error_in_time(
    fake: FakeBotApi, mode: str
) -> None:
    fake.answer = lambda method, body: mode
    start = time.monotonic()
    with pytest.raises(ChannelError):
        _adapter(fake).send(REPLY)
    assert time.monotonic() - start < 3  # timeout 0.5 s: at most one socket timeout late


def test_a_hanging_long_poll_ends_within_its_timeout_and_margin(fake: FakeBotApi) -> None:
    fake.answer = lambda method, body: "hang"
    start = time.monotonic()
    with pytest.raises(ChannelError, match="getUpdates"):
        _adapter(fake).poll(None, 1)
    assert 1.5 <= time.monotonic() - start < 5  # 0.5 s + 1 s long poll + 1 s margin


def test_send_outcomes_from_the_sink(fake: FakeBotApi) -> None:
    fake.respond(200, {"ok": True, "result": {"message_id": 11}})
    assert _adapter(fake).send(REPLY).status == "accepted"
    fake.respond(200, {"ok": True, "result": {"message_id": 11}, "baton_repeat": True})
    repeat = _adapter(fake).send(REPLY)
    assert (repeat.status, repeat.message_id) == ("repeat", 11)
    stale_body = {"ok": False, "error_code": 409, "parameters": {"baton_highest_epoch": 9}}
    fake.respond(409, stale_body)
    stale = _adapter(fake).send(REPLY)
    assert (stale.status, stale.highest_epoch) == ("stale", 9)
    _, body, _ = fake.requests[0]
    assert body == {
        "chat_id": 1,
        "message_thread_id": 2,
        "text": "hi",
        "reply_parameters": {"message_id": 3, "allow_sending_without_reply": True},
        "baton_epoch": 4,
        "baton_reply_key": "k" * 64,
    }


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (409, {"ok": False, "error_code": 409, "description": "Conflict"}),  # no epoch
        (409, {"ok": False, "parameters": {"baton_highest_epoch": "9"}}),
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}),
        (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"}),
        (503, b""),
        (200, {"ok": True, "result": {"message_id": "11"}}),
        (200, {"ok": True, "result": None}),
    ],
)
def test_a_send_without_a_clear_outcome_is_a_channel_error(
    fake: FakeBotApi, status: int, body: Any
) -> None:
    fake.respond(status, body)
    with pytest.raises(ChannelError) as info:
        _adapter(fake).send(REPLY)
    assert "SECRET" not in info.value.detail
    # refused for good (nothing delivered) only on a 4xx other than 409
    rejected = 400 <= status < 500 and status != 409
    assert isinstance(info.value, ChannelRejected) == rejected
    assert not isinstance(info.value, NotDelivered)  # the others may have been delivered


def test_without_fencing_no_baton_parameter_is_sent_and_nothing_else_is_claimed(
    fake: FakeBotApi,
) -> None:
    fake.respond(200, {"ok": True, "result": {"message_id": 11}, "baton_repeat": True})
    channel = _adapter(fake, fencing=False)
    assert channel.send(REPLY).status == "accepted"  # a Bot API that says "repeat" is odd
    _, body, _ = fake.requests[0]
    assert not [k for k in body if k.startswith("baton_")]
    assert channel.delivered("k" * 64) is None
    with pytest.raises(ChannelUnsupported):
        channel.post_user_message("t", "x", "c")
    assert len(fake.requests) == 1  # delivered() and post asked nothing
    fake.respond(409, {"ok": False, "parameters": {"baton_highest_epoch": 9}})
    with pytest.raises(ChannelError):
        channel.send(REPLY)  # only a fencing sink can say "stale"


def test_proxies_from_the_environment_are_never_used(
    fake: FakeBotApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing there
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _adapter(fake).poll(None, 0) == []


# --- against the real service: Telegram mode, open_channel -------------------------------


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path / "chat.sqlite").start()
    try:
        yield server
    finally:
        server.stop()


def test_telegram_mode_against_the_chat_service_sends_plain_messages(chat: ChatServer) -> None:
    local = open_channel(
        f"local:{chat.url}",
        poller_id="m_a",
        telegram_token=chat.bot_token,
        chat_user_token=chat.user_token,
    )
    tg = open_channel(f"telegram:{chat.url}/", poller_id="m_b", telegram_token=chat.bot_token)
    assert (local.name, tg.name) == ("local", "telegram")
    local.post_user_message("t", "hello", "c")
    [msg] = tg.poll(None, 0)
    assert isinstance(msg, InboundMessage) and msg.channel == "telegram"
    reply = OutboundReply(msg.chat_id, msg.thread_id, msg.message_id, "hi", 5, "e" * 64)
    assert local.send(reply).status == "accepted"
    late = OutboundReply(msg.chat_id, msg.thread_id, msg.message_id, "hi", 1, "e" * 64)
    assert local.send(late).status == "stale"
    assert tg.send(late).status == "accepted"  # a plain send is never stale nor a repeat
    assert tg.send(late).status == "accepted"
    sends = chat.api("/api/sends")["sends"]
    assert [(s["outcome"], s["epoch"], s["reply_key"], s["poller"]) for s in sends] == [
        ("accepted", 5, "e" * 64, "m_a"),
        ("stale", 1, "e" * 64, "m_a"),
        ("accepted", None, None, "m_b"),
        ("accepted", None, None, "m_b"),
    ]


def test_a_wrong_token_is_refused(chat: ChatServer) -> None:
    ok = BotApiChannel("local", chat.url, chat.bot_token, fencing=True)
    wrong = BotApiChannel("local", chat.url, "1:wrong", fencing=True, user_token="nope")
    assert ok.poll(None, 0) == []
    with pytest.raises(ChannelError, match="Unauthorized"):
        wrong.poll(None, 0)
    with pytest.raises(ChannelError, match="401"):
        wrong.post_user_message("t", "hello", "c")  # the user API wants the user token
    no_user = BotApiChannel("local", chat.url, chat.bot_token, fencing=True)
    with pytest.raises(ChannelUnsupported, match="user token"):
        no_user.post_user_message("t", "hello", "c")


def test_a_local_channel_needs_the_bot_token() -> None:
    with pytest.raises(ConfigError, match="bot token"):
        open_channel("local:http://127.0.0.1:9", poller_id="m_a", telegram_token=None)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "local",
        "local:",
        "local:ftp://x:1",
        "local:http://",
        "local:http://h:port",
        "tg",
        "telegram:file:///etc",
        "memory",
    ],
)
def test_open_channel_refuses_what_names_no_channel(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_channel(spec, poller_id="m", telegram_token="1:x")
    assert info.value.knob == "channel"


def test_open_channel_needs_a_token_for_telegram() -> None:
    for token in (None, ""):
        with pytest.raises(ConfigError, match="token"):
            open_channel("telegram", poller_id="m", telegram_token=token)
    channel = open_channel("telegram", poller_id="m", telegram_token="1:x")
    assert isinstance(channel, BotApiChannel)
    assert (channel.base_url, channel.fencing) == ("https://api.telegram.org", False)


def test_undecodable_bytes_in_an_answer_become_replacement_characters(fake: FakeBotApi) -> None:
    body = json.dumps({"ok": True, "result": [_msg(text="TEXT")]}).encode()
    fake.respond(200, body.replace(b"TEXT", b"caf\xe9 \xff!"))
    counters = Counters()
    [update] = _adapter(fake, counters=counters).poll(None, 0)
    assert isinstance(update, InboundMessage) and update.text == "caf\ufffd \ufffd!"
    assert counters.snapshot() == {"channel.replaced_text": 1}


def test_check_finds_a_webhook_and_a_wrong_token(fake: FakeBotApi) -> None:
    fake.respond(200, {"ok": True, "result": {"url": ""}})
    assert "no webhook" in _adapter(fake).check(2.0)  # type: ignore[union-attr]
    assert fake.requests[-1][0] == "/bot123:SECRET/getWebhookInfo"
    fake.respond(200, {"ok": True, "result": {"url": "https://example.invalid/hook"}})
    with pytest.raises(ChannelError, match="webhook is set"):
        _adapter(fake).check(2.0)  # type: ignore[union-attr]
    fake.respond(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    with pytest.raises(ChannelError, match="Unauthorized"):
        _adapter(fake).check(2.0)  # type: ignore[union-attr]
