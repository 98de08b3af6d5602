"""The bundled chat service behaving like Telegram: telegram mode (no fencing, no reply
keys, Telegram's length limit), and in both modes rate limits (429), a send delay,
webhooks, message kinds, edits, the fault controls and the migration of a version-1 file.
Real ChatServers over HTTP where threads matter, Flask's test client or the store
in-process elsewhere."""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from baton.channels.chat_schema import SCHEMA_VERSION
from baton.channels.chat_server import ChatServer
from baton.channels.chat_service import create_chat_app
from baton.channels.chat_store import ChatRefused, ChatStore
from baton.channels.chat_tokens import ChatTokens
from baton.core.errors import ConfigError
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
KEY_A = "a" * 64
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
GRIN = "\N{GRINNING FACE}"  # one character, two UTF-16 code units
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TOKENS = ChatTokens("1:t", "user-token")
AUTH = "Bearer user-token"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _client(tmp_path: Path, mode: str = "fencing", clock: Any = None) -> Iterator[FlaskClient]:
    store = ChatStore(tmp_path / "chat.sqlite", mode=mode, **({"clock": clock} if clock else {}))
    try:
        client = create_chat_app(store, TOKENS).test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = AUTH
        yield client
    finally:
        store.close()


@pytest.fixture(params=["fencing", "telegram"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlaskClient]:
    yield from _client(tmp_path, request.param)


@pytest.fixture
def telegram(tmp_path: Path) -> Iterator[FlaskClient]:
    yield from _client(tmp_path, "telegram")


@pytest.fixture
def fencing(tmp_path: Path) -> Iterator[FlaskClient]:
    yield from _client(tmp_path, "fencing")


def _post(client: FlaskClient, topic: str = "t", **body: Any) -> Any:
    return client.post(f"/api/topics/{topic}/messages", json=body or {"text": "question"})


def _send(client: FlaskClient, **params: Any) -> Any:
    base = {"chat_id": 1, "message_thread_id": 1, "text": "reply"}
    return client.post("/bot1:t/sendMessage", json={**base, **params})


def _bot_texts(client: FlaskClient, topic: str = "t") -> list[str]:
    listed = client.get(f"/api/topics/{topic}/messages").get_json()["messages"]
    return [m["text"] for m in listed if m["from"] == "bot"]


def _http(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Authorization": AUTH})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --- telegram mode: no fencing, no reply keys, Telegram's limit ---------------------------


def test_telegram_mode_delivers_a_repeated_key_twice_and_a_lower_epoch(tmp_path: Path) -> None:
    with ChatServer(tmp_path / "chat.sqlite", mode="telegram", tokens=TOKENS) as chat:
        assert _http(f"{chat.url}/health")[1]["mode"] == "telegram"
        _http(f"{chat.url}/api/topics/t/messages", {"text": "question"})
        base = {"chat_id": 1, "message_thread_id": 1}
        answers = [
            _http(f"{chat.url}/bot1:t/sendMessage", {**base, "text": text, **fence})
            for text, fence in [
                ("first", {"baton_epoch": 5, "baton_reply_key": KEY_A}),
                ("again", {"baton_epoch": 5, "baton_reply_key": KEY_A}),
                ("higher", {"baton_epoch": 9}),
                ("lower", {"baton_epoch": 3, "baton_reply_key": "x"}),  # not even checked
            ]
        ]
        assert [status for status, _ in answers] == [200, 200, 200, 200]
        assert all(set(doc) == {"ok", "result"} for _, doc in answers)  # no baton_repeat
        assert [doc["result"]["message_id"] for _, doc in answers] == [2, 3, 4, 5]
        _, listed = _http(f"{chat.url}/api/topics/t/messages")
        bots = [m for m in listed["messages"] if m["from"] == "bot"]
        assert [(m["text"], m["epoch"], m["reply_key"]) for m in bots] == [
            ("first", None, None),
            ("again", None, None),
            ("higher", None, None),
            ("lower", None, None),
        ]
        _, sends = _http(f"{chat.url}/api/sends")
        assert [(s["outcome"], s["epoch"], s["reply_key"]) for s in sends["sends"]] == [
            ("accepted", None, None)
        ] * 4
        assert chat.store is not None and chat.store.highest_epoch() == 0


def test_fencing_mode_still_fences_the_same_sequence(fencing: FlaskClient) -> None:
    _post(fencing)
    assert _send(fencing, baton_epoch=5, baton_reply_key=KEY_A).status_code == 200
    assert _send(fencing, baton_epoch=5, baton_reply_key=KEY_A).get_json()["baton_repeat"]
    assert _send(fencing, baton_epoch=9).status_code == 200
    assert _send(fencing, baton_epoch=3).status_code == 409
    assert _bot_texts(fencing) == ["reply", "reply"]


def test_get_reply_status_is_no_method_in_telegram_mode(
    telegram: FlaskClient, fencing: FlaskClient
) -> None:
    response = telegram.get(f"/bot1:t/getReplyStatus?reply_key={KEY_A}")
    assert response.status_code == 404
    assert response.get_json() == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found: method not found",
    }
    assert fencing.get(f"/bot1:t/getReplyStatus?reply_key={KEY_A}").status_code == 200


def test_telegram_mode_counts_utf16_code_units(telegram: FlaskClient) -> None:
    _post(telegram)
    at_limit = GRIN * 2048  # 2048 characters, 4096 UTF-16 code units
    assert _send(telegram, text=at_limit).status_code == 200
    for too_long in (GRIN * 2048 + "x", "x" * 4097, GRIN * 4096):
        response = _send(telegram, text=too_long)
        assert response.status_code == 400
        assert response.get_json()["description"] == "Bad Request: message is too long"
    assert _bot_texts(telegram) == [at_limit]
    assert len(telegram.get("/api/sends").get_json()["sends"]) == 1


def test_fencing_mode_keeps_its_own_limit(fencing: FlaskClient) -> None:
    _post(fencing)
    assert _send(fencing, text=GRIN * 4096).status_code == 200
    assert _send(fencing, text="x" * 65537).status_code == 400


def test_a_bad_mode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite"
    for build in (
        lambda: ChatStore(path, mode="telegrm"),
        lambda: ChatServer(path, mode="Telegram"),
    ):
        with pytest.raises(ConfigError) as caught:
            build()
        assert caught.value.knob == "mode" and "mode" in str(caught.value)
    assert not path.exists()
    cli = subprocess.run(
        [sys.executable, "-m", "baton", "chat-server", "--mode", "nope", "--db", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert cli.returncode == 2 and "--mode" in cli.stderr
    assert not path.exists()


def test_the_chat_server_command_takes_the_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    argv = [sys.executable, "-m", "baton", "chat-server", "--port", "0", "--json"]
    argv += ["--db", str(tmp_path / "chat.sqlite"), "--mode", "telegram"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=15), "chat-server printed nothing within 15 s"
        info = json.loads(proc.stdout.readline())
        assert info["mode"] == "telegram"
        assert _http(f"{info['url']}/health")[1]["mode"] == "telegram"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            # its clean stop (the server's loop, its threads, the store) bounds each step
            # at 5 s; a CI host loaded to 25 took more than 10 s in all
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert code == 0


# --- chat not found, both modes -----------------------------------------------------------


def test_an_unknown_chat_is_not_found(client: FlaskClient) -> None:
    _post(client)
    for chat_id in (2, -1001, "@somebody"):
        response = _send(client, chat_id=chat_id)
        assert response.status_code == 400
        assert response.get_json()["description"] == "Bad Request: chat not found"
    assert _bot_texts(client) == []
    assert client.get("/api/sends").get_json() == {"sends": []}


# --- rate limits: Telegram's 429 ----------------------------------------------------------


def test_throttle_next_answers_429_then_delivers(client: FlaskClient) -> None:
    _post(client)
    faults = client.post("/api/faults", json={"throttle_next": 20, "retry_after": 7})
    assert faults.status_code == 200 and faults.get_json()["throttle_next"] == 20
    for n in range(20):
        response = _send(client, text=f"try {n}")
        assert response.status_code == 429
        assert response.get_json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        }
    assert client.get("/api/faults").get_json()["throttle_next"] == 0
    assert _bot_texts(client) == []
    assert _send(client, text="at last").status_code == 200
    assert _bot_texts(client) == ["at last"]
    outcomes = [s["outcome"] for s in client.get("/api/sends").get_json()["sends"]]
    assert outcomes == ["throttled"] * 20 + ["accepted"]


def test_the_token_bucket_refuses_past_the_burst_and_recovers(tmp_path: Path) -> None:
    clock = FakeClock()
    for client in _client(tmp_path, "telegram", clock):
        _post(client)
        client.post("/api/faults", json={"rate_per_s": 0.5, "burst": 2})
        assert [_send(client).status_code for _ in range(2)] == [200, 200]
        refused = _send(client)
        assert refused.status_code == 429
        assert refused.get_json()["parameters"] == {"retry_after": 2}  # 1 token at 0.5/s
        clock.now += 1.0
        assert _send(client).get_json()["parameters"] == {"retry_after": 1}
        clock.now += 1.0
        assert _send(client).status_code == 200
        clock.now += 100.0  # refills up to the burst, not beyond
        assert [_send(client).status_code for _ in range(3)] == [200, 200, 429]
        assert len(_bot_texts(client)) == 5


def test_the_store_takes_faults_in_process(tmp_path: Path) -> None:
    clock = FakeClock()
    store = ChatStore(tmp_path / "chat.sqlite", clock=clock)
    try:
        store.post_user_message("t", "question", None)
        store.set_faults(rate_per_s=1, burst=1)
        args = {"chat_id": 1, "thread_id": 1, "text": "r", "reply_to": None, "poller": ""}
        first = store.send(**args, epoch=1, reply_key=None)
        second = store.send(**args, epoch=1, reply_key=None)
        assert (first.outcome, second.outcome, second.retry_after) == ("accepted", "throttled", 1)
        assert second.message is None
        with pytest.raises(ChatRefused):
            store.set_faults(burst=0)
        assert store.faults()["burst"] == 1
    finally:
        store.close()


# --- the send delay: delivered, but the sender does not know yet --------------------------


def test_a_delayed_send_is_visible_before_its_answer(tmp_path: Path) -> None:
    with ChatServer(tmp_path / "chat.sqlite", mode="telegram", tokens=TOKENS) as chat:
        assert chat.store is not None
        _http(f"{chat.url}/api/topics/t/messages", {"text": "question"})
        chat.store.set_faults(send_delay_ms=60_000)
        answers: list[tuple[int, Any]] = []
        body = {"chat_id": 1, "message_thread_id": 1, "text": "in flight"}
        sender = threading.Thread(
            target=lambda: answers.append(_http(f"{chat.url}/bot1:t/sendMessage", body)),
            daemon=True,
        )
        sender.start()
        try:

            def visible() -> list[dict[str, Any]]:
                _, doc = _http(f"{chat.url}/api/topics/t/messages")
                return [m for m in doc["messages"] if m["text"] == "in flight"]

            [seen] = wait_for(visible, 10, "the delayed reply in the topic")
            assert answers == [] and sender.is_alive()  # the sender does not know yet
            _, sends = _http(f"{chat.url}/api/sends")
            assert [s["outcome"] for s in sends["sends"]] == ["accepted"]
        finally:
            chat.store.set_faults(send_delay_ms=0)  # releases the send in flight
            sender.join(10)
        assert not sender.is_alive()
        [(status, doc)] = answers
        assert status == 200 and doc["result"]["message_id"] == seen["message_id"]


# --- webhooks -----------------------------------------------------------------------------


def test_a_webhook_makes_get_updates_conflict_until_deleted(client: FlaskClient) -> None:
    _post(client)
    for bad in ({}, {"url": ""}, {"url": 5}):
        response = client.post("/bot1:t/setWebhook", json=bad)
        assert response.status_code == 400 and response.get_json()["ok"] is False
    set_ = client.post("/bot1:t/setWebhook", json={"url": "https://example.invalid/hook"})
    assert set_.get_json() == {"ok": True, "result": True, "description": "Webhook was set"}
    info = client.get("/bot1:t/getWebhookInfo").get_json()
    assert info == {
        "ok": True,
        "result": {"url": "https://example.invalid/hook", "pending_update_count": 1},
    }
    refused = client.get("/bot1:t/getUpdates?offset=5")
    assert refused.status_code == 409
    assert refused.get_json() == {"ok": False, "error_code": 409, "description": WEBHOOK_CONFLICT}
    deleted = client.post("/bot1:t/deleteWebhook").get_json()
    assert deleted == {"ok": True, "result": True, "description": "Webhook was deleted"}
    again = client.post("/bot1:t/deleteWebhook").get_json()
    assert again["description"] == "Webhook is already deleted"
    assert client.get("/bot1:t/getWebhookInfo").get_json()["result"]["url"] == ""
    updates = client.get("/bot1:t/getUpdates").get_json()["result"]
    assert [u["update_id"] for u in updates] == [1]  # the refused offset confirmed nothing
    polls = client.get("/api/polls").get_json()["polls"]
    assert [(p["offset"], p["outcome"]) for p in polls] == [(5, "webhook"), (None, "ok")]


def test_a_webhook_is_durable_and_ends_a_waiting_poll(tmp_path: Path) -> None:
    with ChatServer(tmp_path / "chat.sqlite", tokens=TOKENS) as chat:
        answers: list[tuple[int, Any]] = []
        poller = threading.Thread(
            target=lambda: answers.append(_http(f"{chat.url}/bot1:t/getUpdates?timeout=20")),
            daemon=True,
        )
        poller.start()
        try:
            wait_for(lambda: chat.store and chat.store.waiting_polls, 10, "a waiting poll")
            status, _ = _http(f"{chat.url}/bot1:t/setWebhook", {"url": "https://h.invalid/"})
            assert status == 200
        finally:
            poller.join(10)
        assert not poller.is_alive()
        assert answers == [(409, {"ok": False, "error_code": 409, "description": WEBHOOK_CONFLICT})]
    with ChatServer(tmp_path / "chat.sqlite", tokens=TOKENS) as chat:  # a restart keeps the webhook
        assert _http(f"{chat.url}/bot1:t/getUpdates")[0] == 409


# --- message kinds and edits --------------------------------------------------------------

_IDS = {"file_id": "baton-{kind}-1", "file_unique_id": "{kind}1"}


def _ids(kind: str) -> dict[str, str]:
    return {k: v.format(kind=kind) for k, v in _IDS.items()}


def _sticker(emoji: str) -> dict[str, Any]:
    shape = {"type": "regular", "width": 512, "height": 512, "is_animated": False}
    return {**_ids("sticker"), **shape, "is_video": False, "emoji": emoji}


@pytest.mark.parametrize(
    ("body", "content"),
    [
        ({"text": "hi"}, {"text": "hi"}),
        ({"kind": "text", "text": "hi"}, {"text": "hi"}),
        (
            {"kind": "photo", "caption": "look"},
            {
                "photo": [{**_ids("photo"), "width": 90, "height": 90, "file_size": 1024}],
                "caption": "look",
            },
        ),
        (
            {"kind": "document"},
            {"document": {**_ids("document"), "file_name": "file.bin", "file_size": 1024}},
        ),
        (
            {"kind": "voice", "caption": "listen"},
            {"voice": {**_ids("voice"), "duration": 2}, "caption": "listen"},
        ),
        ({"kind": "sticker"}, {"sticker": _sticker("\N{THUMBS UP SIGN}")}),
        ({"kind": "sticker", "emoji": "\N{CAT FACE}"}, {"sticker": _sticker("\N{CAT FACE}")}),
    ],
)
def test_each_kind_makes_telegrams_update(
    client: FlaskClient, body: dict[str, Any], content: dict[str, Any]
) -> None:
    assert _post(client, **body).status_code == 201
    [update] = client.get("/bot1:t/getUpdates").get_json()["result"]
    message = update["message"]
    assert isinstance(message.pop("date"), int)
    assert message == {
        "message_id": 1,
        "message_thread_id": 1,
        "is_topic_message": True,
        "chat": {"id": 1, "type": "supergroup"},
        "from": {"id": 1000, "is_bot": False, "username": "user"},
        **content,
    }
    [listed] = client.get("/api/topics/t/messages").get_json()["messages"]
    kind = body.get("kind", "text")
    assert (listed["kind"], listed["caption"]) == (kind, body.get("caption"))
    assert listed["text"] == (body["text"] if kind == "text" else None)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"kind": "video"}, "kind"),
        ({"kind": 3, "text": "x"}, "kind"),
        ({"kind": "photo", "text": "x"}, "no text"),
        ({"kind": "text", "text": "x", "caption": "c"}, "caption"),
        ({"kind": "sticker", "caption": "c"}, "caption"),
        ({"kind": "photo", "emoji": "\N{CAT FACE}"}, "emoji"),
        ({"kind": "photo", "caption": ""}, "caption"),
        ({"kind": "photo", "caption": 5}, "caption"),
        ({"kind": "voice", "caption": GRIN * 512 + "x"}, "1024"),
        ({"kind": "sticker", "emoji": ""}, "emoji"),
        ({"kind": "text"}, "text"),
    ],
)
def test_a_bad_kind_is_refused(client: FlaskClient, body: dict[str, Any], detail: str) -> None:
    response = _post(client, **body)
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["error"] == "bad_request" and detail in doc["detail"]
    assert client.get("/api/topics").get_json() == {"topics": []}


def test_a_caption_is_valid_unicode_and_at_most_1024_units(client: FlaskClient) -> None:
    raw = b'{"kind": "photo", "caption": "a\\ud800"}'
    response = client.post("/api/topics/t/messages", data=raw, content_type="application/json")
    assert response.status_code == 400 and "surrogate" in response.get_json()["detail"]
    assert _post(client, kind="photo", caption=GRIN * 512).status_code == 201


def test_an_edit_creates_an_edited_message_update(client: FlaskClient) -> None:
    _post(client, text="before")
    [original] = client.get("/bot1:t/getUpdates").get_json()["result"]
    edited = client.post("/api/topics/t/messages/1/edit", json={"text": "after"})
    assert edited.status_code == 200
    assert edited.get_json() == {"message_id": 1, "topic": "t", "thread_id": 1, "update_id": 2}
    [update] = client.get("/bot1:t/getUpdates?offset=2").get_json()["result"]
    assert set(update) == {"update_id", "edited_message"} and update["update_id"] == 2
    message = update["edited_message"]
    assert isinstance(message.pop("edit_date"), int)
    assert message == {**original["message"], "text": "after"}
    assert [m["text"] for m in client.get("/api/topics/t/messages").get_json()["messages"]] == [
        "after"
    ]


def test_each_pending_update_keeps_the_text_it_was_made_with(client: FlaskClient) -> None:
    _post(client, text="one")
    client.post("/api/topics/t/messages/1/edit", json={"text": "two"})
    client.post("/api/topics/t/messages/1/edit", json={"text": "three"})
    updates = client.get("/bot1:t/getUpdates").get_json()["result"]
    shown = [
        (sorted(set(u) - {"update_id"}), u.get("message", u.get("edited_message"))) for u in updates
    ]
    assert [(keys, m["text"]) for keys, m in shown] == [
        (["message"], "one"),
        (["edited_message"], "two"),
        (["edited_message"], "three"),
    ]


def test_a_bad_edit_is_refused(client: FlaskClient) -> None:
    _post(client, text="mine")
    _post(client, kind="photo")
    _send(client, text="the bot's")
    cases = [
        ("/api/topics/t/messages/9/edit", {"text": "x"}, 404, "not_found"),
        ("/api/topics/nobody/messages/1/edit", {"text": "x"}, 404, "not_found"),
        ("/api/topics/t/messages/3/edit", {"text": "x"}, 400, "bad_request"),  # the bot's
        ("/api/topics/t/messages/2/edit", {"text": "x"}, 400, "bad_request"),  # a photo
        ("/api/topics/t/messages/1/edit", {"text": ""}, 400, "bad_request"),
        ("/api/topics/t/messages/1/edit", {}, 400, "bad_request"),
        (f"/api/topics/t/messages/{2**70}/edit", {"text": "x"}, 404, "not_found"),
    ]
    for path, body, status, error in cases:
        response = client.post(path, json=body)
        assert (response.status_code, response.get_json()["error"]) == (status, error), path
        assert set(response.get_json()) == {"error", "detail"}
    updates = client.get("/bot1:t/getUpdates").get_json()["result"]
    assert [u["update_id"] for u in updates] == [1, 2]  # no edit was made
    assert _bot_texts(client) == ["the bot's"]


# --- the fault controls -------------------------------------------------------------------


def test_faults_are_read_and_set(client: FlaskClient) -> None:
    assert client.get("/api/faults").get_json() == {
        "rate_per_s": 0.0,
        "burst": 1,
        "throttle_next": 0,
        "retry_after": 1,
        "send_delay_ms": 0,
    }
    values = {"rate_per_s": 2.5, "burst": 4, "throttle_next": 3, "retry_after": 9}
    assert client.post("/api/faults", json=values).get_json() == {**values, "send_delay_ms": 0}
    assert client.get("/api/faults").get_json() == {**values, "send_delay_ms": 0}


@pytest.mark.parametrize(
    "body",
    [
        {"nope": 1},
        {"rate_per_s": 5, "nope": 1},
        {"rate_per_s": -1},
        {"rate_per_s": "1"},
        {"rate_per_s": True},
        {"burst": 0},
        {"burst": 1.5},
        {"throttle_next": -1},
        {"throttle_next": True},
        {"retry_after": 0},
        {"retry_after": 3601},
        {"send_delay_ms": 60_001},
        {"send_delay_ms": 5, "burst": 0},
        [1],
        "throttle_next",
        b'{"rate_per_s": NaN}',
        b"{not json",
    ],
)
def test_bad_faults_are_refused_and_change_nothing(client: FlaskClient, body: Any) -> None:
    client.post("/api/faults", json={"throttle_next": 2, "retry_after": 3})
    before = client.get("/api/faults").get_json()
    if isinstance(body, bytes):
        response = client.post("/api/faults", data=body, content_type="application/json")
    else:
        response = client.post("/api/faults", json=body)
    assert response.status_code == 400
    assert set(response.get_json()) == {"error", "detail"}
    assert response.get_json()["error"] == "bad_request"
    assert client.get("/api/faults").get_json() == before


# --- the migration of a version-1 file ----------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE topics (thread_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);
CREATE TABLE messages (
    message_id INTEGER PRIMARY KEY AUTOINCREMENT, thread_id INTEGER NOT NULL,
    sender TEXT NOT NULL, text TEXT NOT NULL, date INTEGER NOT NULL, client_id TEXT,
    update_id INTEGER, reply_to INTEGER, epoch INTEGER, reply_key TEXT UNIQUE,
    UNIQUE (thread_id, client_id));
CREATE TABLE updates (update_id INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER NOT NULL);
CREATE TABLE sends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, reply_key TEXT,
    epoch INTEGER, outcome TEXT NOT NULL, chat_id INTEGER, thread_id INTEGER,
    reply_to INTEGER, message_id INTEGER, poller TEXT NOT NULL);
CREATE INDEX sends_by_key ON sends (reply_key);
CREATE TABLE polls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, poller TEXT NOT NULL,
    "offset" INTEGER, outcome TEXT NOT NULL, count INTEGER NOT NULL);
INSERT INTO meta VALUES ('highest_epoch', 5);
INSERT INTO topics (name) VALUES ('old');
INSERT INTO messages (thread_id, sender, text, date, client_id, update_id)
    VALUES (1, 'user', 'asked before', 1700000000, 'c1', 1);
INSERT INTO updates (message_id) VALUES (1);
INSERT INTO messages (thread_id, sender, text, date, reply_to, epoch, reply_key)
    VALUES (1, 'bot', 'answered before', 1700000001, 1, 5, '{key}');
INSERT INTO sends (time, reply_key, epoch, outcome, chat_id, thread_id, reply_to,
    message_id, poller) VALUES (1700000001, '{key}', 5, 'accepted', 1, 1, 1, 2, 'm1');
PRAGMA user_version = 1;
"""


def _v1_file(path: Path, script: str) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(script)
    finally:
        db.close()


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_version_1_file_is_migrated_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite"
    _v1_file(path, _V1_SCHEMA.format(key=KEY_A))
    for client in _client(tmp_path):
        listed = client.get("/api/topics/old/messages").get_json()["messages"]
        assert [(m["from"], m["kind"], m["text"], m["caption"]) for m in listed] == [
            ("user", "text", "asked before", None),
            ("bot", "text", "answered before", None),
        ]
        assert listed[1]["reply_key"] == KEY_A and listed[1]["epoch"] == 5
        [update] = client.get("/bot1:t/getUpdates").get_json()["result"]
        assert update["message"]["text"] == "asked before" and update["update_id"] == 1
        repeat = _send(client, baton_epoch=5, baton_reply_key=KEY_A).get_json()
        assert repeat["baton_repeat"] is True and repeat["result"]["message_id"] == 2
        assert _send(client, baton_epoch=4).status_code == 409
        assert _post(client, "old", text="asked before", client_id="c1").status_code == 200
        photo = _post(client, "old", kind="photo", caption="new").get_json()
        assert photo["message_id"] == 3 and photo["update_id"] == 2
        client.post("/api/topics/old/messages/1/edit", json={"text": "asked again"})
        updates = client.get("/bot1:t/getUpdates?offset=2").get_json()["result"]
        assert [u["update_id"] for u in updates] == [2, 3]
        assert len(client.get("/api/sends").get_json()["sends"]) == 3
    assert _user_version(path) == SCHEMA_VERSION == 2


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite"
    _v1_file(path, "CREATE TABLE meta (key TEXT PRIMARY KEY); PRAGMA user_version = 1;")
    with pytest.raises(ConfigError) as caught:
        ChatStore(path)
    assert caught.value.knob == "db"
    assert _user_version(path) == 1
    db = sqlite3.connect(path)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert tables == {"meta", "sqlite_autoindex_meta_1"}


def test_an_unknown_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite"
    _v1_file(path, "PRAGMA user_version = 3;")
    with pytest.raises(ConfigError, match="schema 3"):
        ChatStore(path)
    assert _user_version(path) == 3
