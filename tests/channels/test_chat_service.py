"""The bundled chat service: its HTTP API through Flask's test client, its store across
restarts, a real ChatServer, and `baton chat-server` as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from baton.channels.chat_server import ChatServer
from baton.channels.chat_service import create_chat_app
from baton.channels.chat_store import ChatStore
from baton.channels.chat_tokens import ChatTokens, token_paths
from baton.core.errors import AddressInUse, HomeError
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
KEY_A, KEY_B = "a" * 64, "b" * 64
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    chat = ChatStore(tmp_path / "chat.sqlite")
    try:
        yield chat
    finally:
        chat.close()


TOKENS = ChatTokens("1:t", "user-token")
AUTH = {"Authorization": "Bearer user-token"}


@pytest.fixture
def app(store: ChatStore) -> Flask:
    return create_chat_app(store, TOKENS)


def user_client(app: Flask) -> FlaskClient:
    """A client that sends the user token with every request (the bot's is in paths)."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = AUTH["Authorization"]
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return user_client(app)


def _post(client: FlaskClient, topic: str, text: str, client_id: str | None = None) -> Any:
    body: dict[str, Any] = {"text": text}
    if client_id is not None:
        body["client_id"] = client_id
    return client.post(f"/api/topics/{topic}/messages", json=body)


def _send(client: FlaskClient, **params: Any) -> Any:
    base = {"chat_id": 1, "message_thread_id": 1, "text": "reply"}
    return client.post("/bot1:t/sendMessage", json={**base, **params})


# --- the user's side ----------------------------------------------------------------------


def test_health(client: FlaskClient) -> None:
    assert client.get("/health").get_json() == {
        "ok": True,
        "service": "baton-chat",
        "mode": "fencing",
    }


def test_posting_a_message_creates_one_update_and_a_client_id_posts_once(
    client: FlaskClient,
) -> None:
    first = _post(client, "general", "hello", "c1")
    assert first.status_code == 201
    assert first.get_json() == {"message_id": 1, "topic": "general", "thread_id": 1, "update_id": 1}
    again = _post(client, "general", "hello again", "c1")
    assert again.status_code == 200 and again.get_json() == first.get_json()
    other = _post(client, "ops", "elsewhere", "c1")  # a client_id is per topic
    assert other.status_code == 201
    assert other.get_json() == {"message_id": 2, "topic": "ops", "thread_id": 2, "update_id": 2}
    [update, _] = client.get("/bot1:t/getUpdates").get_json()["result"]
    date = update["message"].pop("date")
    assert isinstance(date, int) and abs(date - time.time()) < 60
    assert update == {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "message_thread_id": 1,
            "is_topic_message": True,
            "chat": {"id": 1, "type": "supergroup"},
            "from": {"id": 1000, "is_bot": False, "username": "user"},
            "text": "hello",
        },
    }
    assert client.get("/api/topics").get_json() == {
        "topics": [{"topic": "general", "thread_id": 1}, {"topic": "ops", "thread_id": 2}]
    }


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/api/topics/t/messages", {"text": ""}, "text"),
        ("/api/topics/t/messages", {"text": 5}, "text"),
        ("/api/topics/t/messages", {}, "text"),
        ("/api/topics/t/messages", {"text": "x", "client_id": 3}, "client_id"),
        ("/api/topics/t/messages", ["text"], "object"),
        ("/api/topics/t/messages", b"{not json", "not JSON"),
        ("/api/topics/t/messages", b'{"text": "caf\xe9"}', "not UTF-8"),
        ("/api/topics/t/messages", b'{"text": "a\\ud800"}', "surrogate"),
        ("/api/topics/a%20b/messages", {"text": "x"}, "topic name"),
        ("/api/topics/" + "x" * 65 + "/messages", {"text": "x"}, "topic name"),
        ("/api/topics/caf%C3%A9/messages", {"text": "x"}, "topic name"),
    ],
)
def test_a_bad_post_is_refused_with_a_clear_json_error(
    client: FlaskClient, path: str, body: Any, detail: str
) -> None:
    if isinstance(body, bytes):
        response = client.post(path, data=body, content_type="application/json")
    else:
        response = client.post(path, json=body)
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["error"] == "bad_request" and detail in doc["detail"]
    assert client.get("/api/topics").get_json() == {"topics": []}


def test_a_body_over_two_mebibytes_is_refused_with_413(client: FlaskClient) -> None:
    huge = json.dumps({"text": "x" * (2 * 1024 * 1024)})
    response = client.post("/api/topics/t/messages", data=huge, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"
    almost = json.dumps({"text": "y" * (2 * 1024 * 1024 - 100)})
    response = client.post("/api/topics/t/messages", data=almost, content_type="application/json")
    assert response.status_code == 201  # the service does not limit the text: the ledger does


def test_messages_are_listed_in_order_with_the_bots_fields(client: FlaskClient) -> None:
    assert client.get("/api/topics/nobody/messages").get_json() == {
        "topic": "nobody",
        "thread_id": None,
        "messages": [],
    }
    _post(client, "t", "question")
    assert (
        _send(client, reply_to_message_id=1, baton_epoch=2, baton_reply_key=KEY_A).status_code
        == 200
    )
    doc = client.get("/api/topics/t/messages").get_json()
    for m in doc["messages"]:
        assert isinstance(m.pop("date"), int)
    assert doc == {
        "topic": "t",
        "thread_id": 1,
        "messages": [
            {"message_id": 1, "from": "user", "kind": "text", "text": "question", "caption": None},
            {
                "message_id": 2,
                "from": "bot",
                "kind": "text",
                "text": "reply",
                "caption": None,
                "reply_to": 1,
                "epoch": 2,
                "reply_key": KEY_A,
            },
        ],
    }


# --- the bot's side -----------------------------------------------------------------------


def test_get_updates_confirms_by_offset_and_takes_query_form_and_json(
    client: FlaskClient,
) -> None:
    for n in range(3):
        _post(client, "t", f"m{n}")

    def ids(response: Any) -> list[int]:
        assert response.status_code == 200, response.get_json()
        return [u["update_id"] for u in response.get_json()["result"]]

    assert ids(client.get("/bot1:t/getUpdates?limit=2")) == [1, 2]
    assert ids(client.post("/bot1:t/getUpdates", data={"offset": "2"})) == [2, 3]
    assert ids(client.post("/bot1:t/getUpdates", json={"offset": 1})) == [2, 3]  # 1 is gone
    assert ids(client.post("/bot1:t/getUpdates", json={"offset": -1})) == [3]
    assert ids(client.get("/bot1:t/getUpdates")) == [3]
    assert ids(client.get("/bot1:t/getUpdates?offset=4")) == []
    polls = client.get("/api/polls").get_json()["polls"]
    assert [(p["offset"], p["outcome"], p["count"], p["poller"]) for p in polls] == [
        (None, "ok", 2, ""),
        (2, "ok", 2, ""),
        (1, "ok", 2, ""),
        (-1, "ok", 1, ""),
        (None, "ok", 1, ""),
        (4, "ok", 0, ""),
    ]
    _post(client, "t", "m3")  # ids keep growing after confirmed updates are deleted
    assert ids(client.get("/bot1:t/getUpdates")) == [4]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "timeout=51", "timeout=-1", "offset=x", "timeout=1.5", "offset=1e3"],
)
def test_get_updates_refuses_bad_parameters(client: FlaskClient, query: str) -> None:
    response = client.get(f"/bot1:t/getUpdates?{query}")
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["ok"] is False and doc["error_code"] == 400
    assert doc["description"].startswith("Bad Request")


def test_send_message_answers_like_telegram(client: FlaskClient) -> None:
    _post(client, "t", "question")
    response = _send(
        client, reply_parameters={"message_id": 1}, baton_epoch=1, baton_reply_key=KEY_A
    )
    assert response.status_code == 200
    doc = response.get_json()
    assert isinstance(doc["result"].pop("date"), int)
    assert doc == {
        "ok": True,
        "result": {
            "message_id": 2,
            "chat": {"id": 1, "type": "supergroup"},
            "message_thread_id": 1,
            "is_topic_message": True,
            "text": "reply",
            "from": {"id": 1, "is_bot": True, "username": "baton_bot"},
            "reply_to_message": {"message_id": 1},
        },
    }
    repeat = _send(client, baton_epoch=1, baton_reply_key=KEY_A).get_json()
    assert repeat["baton_repeat"] is True and repeat["result"]["message_id"] == 2
    _send(client, baton_epoch=7, baton_reply_key=KEY_B)
    stale = _send(client, baton_epoch=3, baton_reply_key="c" * 64)
    assert stale.status_code == 409
    assert stale.get_json() == {
        "ok": False,
        "error_code": 409,
        "description": "Conflict: stale epoch 3, the chat has seen 7",
        "parameters": {"baton_highest_epoch": 7},
    }
    plain = client.post(
        "/bot1:t/sendMessage", data={"chat_id": "1", "message_thread_id": "1", "text": "p"}
    )
    assert plain.status_code == 200  # a plain (form) send is never stale
    status = client.get(f"/bot1:t/getReplyStatus?reply_key={KEY_A}").get_json()
    assert status == {"ok": True, "result": {"delivered": True, "message_id": 2}}
    status = client.post("/bot1:t/getReplyStatus", json={"reply_key": "c" * 64}).get_json()
    assert status == {"ok": True, "result": {"delivered": False, "message_id": None}}
    sends = client.get("/api/sends").get_json()["sends"]
    assert [(s["seq"], s["outcome"], s["epoch"], s["message_id"]) for s in sends] == [
        (1, "accepted", 1, 2),
        (2, "repeat", 1, 2),
        (3, "accepted", 7, 3),
        (4, "stale", 3, None),
        (5, "accepted", None, 4),
    ]
    assert all(
        set(s) >= {"time", "reply_key", "chat_id", "thread_id", "reply_to", "poller"} for s in sends
    )
    only_a = client.get(f"/api/sends?reply_key={KEY_A}").get_json()["sends"]
    assert [s["seq"] for s in only_a] == [1, 2]


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"chat_id": 2}, "Bad Request: chat not found"),
        ({"chat_id": "@somebody"}, "Bad Request: chat not found"),
        ({"chat_id": None}, "Bad Request: chat_id is empty"),
        ({"message_thread_id": 9}, "Bad Request: message thread not found"),
        ({"message_thread_id": None}, "Bad Request: message thread not found"),
        ({"text": ""}, "Bad Request: message text is empty"),
        ({"text": "x" * 65537}, "Bad Request: message is too long"),
        ({"text": 5}, "Bad Request: message text is empty"),
        ({"baton_epoch": 0}, "Bad Request: baton_epoch"),
        ({"baton_epoch": True}, "Bad Request: baton_epoch"),
        ({"baton_epoch": "x"}, "Bad Request: baton_epoch"),
        ({"baton_reply_key": "A" * 64}, "Bad Request: baton_reply_key"),
        ({"baton_reply_key": "a" * 63}, "Bad Request: baton_reply_key"),
        ({"reply_parameters": {"chat_id": 1}}, "Bad Request: reply message_id is empty"),
        ({"reply_parameters": "[1]"}, "Bad Request: reply_parameters"),
        ({"chat_id": 2**80}, "Bad Request: chat_id"),
    ],
)
def test_send_message_refuses_bad_parameters_like_telegram(
    client: FlaskClient, params: dict[str, Any], description: str
) -> None:
    _post(client, "t", "question")
    response = _send(client, **params)
    assert response.status_code == 400
    doc = response.get_json()
    assert (doc["ok"], doc["error_code"]) == (False, 400)
    assert doc["description"].startswith(description)
    assert client.get("/api/sends").get_json() == {"sends": []}


def test_text_at_the_limit_is_sent(client: FlaskClient) -> None:
    _post(client, "t", "question")
    assert _send(client, text="x" * 65536).status_code == 200


def test_the_bot_api_takes_only_the_bot_token(store: ChatStore) -> None:
    """Issue 16: any token of the right shape was accepted, so anyone who reached the
    service could read, confirm and answer updates as the bot."""
    client = create_chat_app(store, TOKENS).test_client()
    assert client.get("/bot1:t/getUpdates").status_code == 200
    for bad in ("/bot1:wrong/getUpdates", "/bot1:wrong/nosuchMethod", "/bot!!/getUpdates",
                "/bot" + "x" * 101 + "/getUpdates", "/botANY_token:1-x/sendMessage"):  # fmt: skip
        response = client.get(bad)
        assert response.status_code == 401, bad  # no method probing either
        assert response.get_json() == {
            "ok": False,
            "error_code": 401,
            "description": "Unauthorized",
        }


@pytest.mark.parametrize(
    "path", ["/api/topics", "/api/topics/t/messages", "/api/sends", "/api/polls", "/api/faults"]
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "user-token", "Basic user-token"])
def test_the_user_api_takes_only_the_user_token(
    store: ChatStore, path: str, header: str | None
) -> None:
    """Issue 16: /api/* was open: anyone could post as the user, read every send and set
    faults. Now each route needs the user token."""
    client = create_chat_app(store, TOKENS).test_client()
    headers = {"Authorization": header} if header else {}
    assert client.get(path, headers=headers).status_code == 401
    assert client.post(path, json={"text": "x"}, headers=headers).status_code in (401, 405)
    assert client.get(path, headers=AUTH).status_code == 200
    assert client.get(path, headers={"Authorization": "bearer user-token"}).status_code == 200
    assert client.get("/health").status_code == 200  # open: it says only that it runs
    assert store.topics() == []


def test_tokens_are_minted_at_the_first_start_private_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite"
    with ChatServer(db) as first:
        minted = first.tokens
    bot, user = token_paths(db)
    for path in (bot, user):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert minted is not None and bot.read_text().strip() == minted.bot
    assert re.fullmatch(r"\d{9}:[\w-]{36}", minted.bot) and len(minted.user) >= 40
    with ChatServer(db) as again:
        assert again.tokens == minted  # a restart keeps them
    user.chmod(0o644)
    with pytest.raises(HomeError, match="chmod 600"):
        ChatServer(db).start()
    assert "user-token" not in repr(minted) and minted.user not in repr(minted)


def test_every_error_is_json(app: Flask, client: FlaskClient) -> None:
    def boom() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/api/boom", "boom", boom)
    cases = [
        ("GET", "/nowhere", 404, "error"),
        ("POST", "/health", 405, "error"),
        ("DELETE", "/api/topics/t/messages", 405, "error"),
        ("GET", "/api/boom", 500, "error"),
        ("GET", "/bot1:t/nosuchMethod", 404, "description"),
        ("PUT", "/bot1:t/getUpdates", 405, "description"),
    ]
    for method, path, status, field in cases:
        response = client.open(path, method=method)
        assert response.status_code == status, path
        assert response.content_type == "application/json", path
        assert field in response.get_json(), path
    huge = b"{" + b" " * (2 * 1024 * 1024 + 1) + b"}"
    response = client.post("/bot1:t/sendMessage", data=huge, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error_code"] == 413


# --- the store: durable, private, atomic --------------------------------------------------


def test_a_restart_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite"
    first = ChatStore(path)
    try:
        client = user_client(create_chat_app(first, TOKENS))
        _post(client, "t", "one", "c1")
        _post(client, "t", "two", "c2")
        client.get("/bot1:t/getUpdates?offset=2")  # confirms update 1
        _send(client, baton_epoch=4, baton_reply_key=KEY_A)
    finally:
        first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ChatStore(path)
    try:
        client = user_client(create_chat_app(again, TOKENS))
        assert _post(client, "t", "one", "c1").status_code == 200  # the client id is known
        updates = client.get("/bot1:t/getUpdates").get_json()["result"]
        assert [u["message"]["text"] for u in updates] == ["two"]
        assert _send(client, baton_epoch=4, baton_reply_key=KEY_A).get_json()["baton_repeat"]
        assert _send(client, baton_epoch=3, baton_reply_key=KEY_B).status_code == 409
        assert _post(client, "t", "four", "c4").get_json()["message_id"] == 4
        assert len(client.get("/api/sends").get_json()["sends"]) == 3
        assert len(client.get("/api/polls").get_json()["polls"]) == 2
    finally:
        again.close()
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        assert not side.exists() or stat.S_IMODE(side.stat().st_mode) == 0o600


def test_the_store_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite"
    path.write_bytes(b"")
    path.chmod(0o644)
    store = ChatStore(path)
    try:
        mode = store._conn().execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        store.close()
    assert mode == "wal"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- a real server ------------------------------------------------------------------------


def _http(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={**AUTH, **(headers or {})})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_new_poller_ends_a_waiting_one_and_the_log_names_it(tmp_path: Path) -> None:
    with ChatServer(tmp_path / "chat.sqlite", tokens=TOKENS) as server:
        answers: list[tuple[int, Any]] = []
        first = threading.Thread(
            target=lambda: answers.append(
                _http(
                    f"{server.url}/bot1:t/getUpdates?timeout=20",
                    headers={"X-Baton-Machine": "m_old"},
                )
            ),
            daemon=True,
        )
        first.start()
        try:
            wait_for(lambda: server.store and server.store.waiting_polls, 5, "a waiting poll")
            second = _http(f"{server.url}/bot1:t/getUpdates", headers={"X-Baton-Machine": "m_new"})
        finally:
            first.join(10)
        assert second == (200, {"ok": True, "result": []})
        assert answers == [
            (
                409,
                {
                    "ok": False,
                    "error_code": 409,
                    "description": "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                },
            )
        ]
        _, polls = _http(f"{server.url}/api/polls")
        assert {(p["poller"], p["outcome"]) for p in polls["polls"]} == {
            ("m_old", "conflict"),
            ("m_new", "ok"),
        }


def test_stop_is_quick_with_a_poll_waiting_and_idempotent(tmp_path: Path) -> None:
    server = ChatServer(tmp_path / "chat.sqlite", tokens=TOKENS).start()
    poller = threading.Thread(
        target=lambda: _safe_http(f"{server.url}/bot1:t/getUpdates?timeout=50"), daemon=True
    )
    try:
        poller.start()
        wait_for(lambda: server.store and server.store.waiting_polls, 5, "a waiting poll")
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 3
        server.stop()
    finally:
        server.stop()
        poller.join(10)
    assert not poller.is_alive()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0  # nobody listens any more


def _safe_http(url: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the server goes away under the poll
        _http(url)


def test_a_port_in_use_is_address_in_use(tmp_path: Path) -> None:
    with ChatServer(tmp_path / "one.sqlite") as one, pytest.raises(AddressInUse):
        ChatServer(tmp_path / "two.sqlite", port=one.port).start()


# --- `baton chat-server` as a real process ------------------------------------------------


def _start_cli(db: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "baton", "chat-server", "--port", "0", "--db", str(db), "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=15):
                raise TimeoutError("chat-server printed nothing within 15 s")
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            raise AssertionError(f"chat-server exited {proc.returncode}: {_stderr(proc)}")
        return proc, json.loads(line)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise


def _stderr(proc: subprocess.Popen[str]) -> str:
    return proc.stderr.read() if proc.stderr and proc.poll() is not None else ""


def _stop_cli(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_chat_server_command_serves_stops_on_sigterm_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chat.sqlite"
    proc, info = _start_cli(db)
    try:
        assert info["db"] == str(db) and info["url"].startswith("http://127.0.0.1:")
        assert info["user_token_file"] == str(token_paths(db)[1])
        user = {"Authorization": f"Bearer {token_paths(db)[1].read_text().strip()}"}
        url = f"{info['url']}/api/topics/demo/messages"
        assert _http(url, {"text": "no token"}, {"Authorization": ""})[0] == 401
        status, posted = _http(url, {"text": "kept?"}, user)
        assert status == 201
        assert user["Authorization"].split()[1] not in Path(f"/proc/{proc.pid}/cmdline").read_text()
    finally:
        code = _stop_cli(proc)
    assert code == 0, _stderr(proc)
    proc, info = _start_cli(db)
    try:
        _, listed = _http(f"{info['url']}/api/topics/demo/messages", headers=user)
        assert [(m["message_id"], m["text"]) for m in listed["messages"]] == [
            (posted["message_id"], "kept?")
        ]
    finally:
        assert _stop_cli(proc) == 0
