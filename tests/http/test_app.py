"""The Flask app over a fake services facade: auth, routes, and errors in one shape."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from baton.actors.pool_queries import check, raise_for
from baton.api import create_app, create_door_app
from baton.api.pairing import GLOBAL_BURST, GLOBAL_RATE_PER_S, REFUSED
from baton.core.errors import (
    BatonError,
    InvalidCard,
    NicknameTaken,
    NoPairingSession,
    PairingBurned,
    PairingConsumed,
    PairingError,
    PairingExpired,
    PoolDisabled,
    PoolNotHolder,
    Unavailable,
)
from baton.core.knobs import resolve_settings
from baton.core.ui_login import UiLogins, session_key
from tests.http.samples import STATUS

TOKEN = "s3cret-token"


class FakeServices:
    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []
        self.counted: list[str] = []
        self.fail_with: Exception | None = None
        self.logins = UiLogins(session_key(TOKEN))
        self.now = 1_000_000.0  # the page's sessions are judged on this clock
        self.view: dict[str, Any] = {"status": copy.deepcopy(STATUS), "pool": None}
        self.minted = 0

    def ui_login(self) -> dict[str, Any]:
        self.minted += 1
        code = f"code-{self.minted}"
        self.logins.mint(code, self.now)
        return {"path": f"/login?code={code}", "expires_in_s": 120}

    def ui_redeem(self, code: str) -> str | None:
        return self.logins.redeem(code, f"nonce{self.minted}", self.now)

    def ui_session_ok(self, session: str) -> bool:
        return self.logins.session_ok(session, self.now)

    def ui_view(self) -> dict[str, Any]:
        self._maybe_fail()
        return self.view

    def token_ok(self, presented: str) -> bool:
        return presented == TOKEN

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def health(self) -> dict[str, Any]:
        return {"ok": True, "machine_id": "m_aaaaaaaaaaaaaaaa"}

    def whoami(self) -> dict[str, Any]:
        self._maybe_fail()
        return {
            "machine_id": "m_aaaaaaaaaaaaaaaa",
            "nickname": "laptop",
            "role": "awake",
            "running": True,
        }

    def machines(self) -> list[dict[str, Any]]:
        self._maybe_fail()
        return [
            {
                "machine_id": "m_aaaaaaaaaaaaaaaa",
                "nickname": "laptop",
                "role": "awake",
                "status": "active",
            }
        ]

    def add_machine(self, card: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail()
        self.added.append(card)
        return {"machine_id": card.get("machine_id"), "role": "standby"}

    def status(self) -> dict[str, Any]:
        self._maybe_fail()
        return {"role": "awake", "peers": []}

    def metrics(self) -> dict[str, Any]:
        counters = {"wire.dropped.malformed": 2, "wire.received": 7}
        return {"counters": counters, "histograms": {}, "status": None}

    def count(self, name: str) -> None:
        self.counted.append(name)

    def pair_start(self, body: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail()
        self.added.append(body)
        return {}

    pair_finish = leave = pair_start

    pool_on = False
    holding = True

    pool_answers: dict[str, dict[str, Any]] = {}
    asked: list[tuple[str, dict[str, Any]]] = []

    def pool_ask(self, op: str, **args: Any) -> Any:
        """As the node's: the question checked, then answered as the holder's answer
        would be (``pool_answers``), errors raised as their typed errors."""
        op, args = check(op, args)
        if not self.pool_on:
            raise PoolDisabled("the pool is off")
        self.asked.append((op, args))
        return raise_for(self.pool_answers.get(op, {"ok": {"enabled": True, "role": "holder"}}))

    def set_pool(self, enabled: bool) -> dict[str, Any]:
        if not self.holding:
            raise PoolNotHolder("only the holder changes the pool: ask m_b")
        self.pool_on = enabled
        return {"enabled": enabled, "role": "holder"}

    def send_message(self, topic: str, text: str, wait_s: float) -> dict[str, Any]:
        self._maybe_fail()
        self.sent = (topic, text, wait_s)
        if topic == "slow":
            return {"item_id": "i1", "status": "queued"}
        return {"item_id": "i1", "status": "posted", "message_id": 7}


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_health_needs_no_token(client: FlaskClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json == {"ok": True, "machine_id": "m_aaaaaaaaaaaaaaaa"}


@pytest.mark.parametrize("path", ["/api/whoami", "/api/machines", "/api/status"])
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic s3cret-token", "Bearer "])
def test_operator_routes_need_the_token(
    client: FlaskClient, services: FakeServices, path: str, header: str | None
) -> None:
    r = client.get(path, headers={"Authorization": header} if header else {})
    assert r.status_code == 401
    assert r.json["error"] == "unauthorized" and "Bearer" in r.json["detail"]
    assert services.counted == ["http.refused.unauthorized"]


def test_operator_routes_answer_with_the_token(client: FlaskClient) -> None:
    assert client.get("/api/whoami", headers=AUTH).json["nickname"] == "laptop"
    assert client.get("/api/machines", headers=AUTH).json[0]["role"] == "awake"
    assert client.get("/api/status", headers=AUTH).json == {"role": "awake", "peers": []}


def test_adding_a_machine(client: FlaskClient, services: FakeServices) -> None:
    r = client.post("/api/machines", json={"machine_id": "m_bbbbbbbbbbbbbbbb"}, headers=AUTH)
    assert r.status_code == 201 and services.added == [{"machine_id": "m_bbbbbbbbbbbbbbbb"}]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_not_an_object_is_a_400(
    client: FlaskClient, body: bytes, services: FakeServices
) -> None:
    r = client.post(
        "/api/machines", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json["error"] == "bad_request"
    assert services.added == []


DEEP = [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b"[" * 65 + b"]" * 65]


@pytest.mark.parametrize("body", DEEP)
@pytest.mark.parametrize("path", ["/api/machines", "/api/pair/start", "/api/leave"])
def test_a_deeply_nested_body_is_a_400_on_every_json_route(
    client: FlaskClient, services: FakeServices, body: bytes, path: str
) -> None:
    """Issue 16: a 5,000-deep body was a 500 on every JSON route, the unauthenticated
    pairing routes included (Flask's get_json lets RecursionError out)."""
    r = client.post(path, data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["error"] == "bad_request"
    assert "nested" in r.json["detail"] and services.added == []


@pytest.mark.parametrize(
    "closed",
    [NoPairingSession("none"), PairingExpired("expired"), PairingBurned("burned"),
     PairingConsumed("used"), PairingError("SPAKE2 message must be 33 bytes")],
)  # fmt: skip
def test_a_refused_start_does_not_say_whether_or_why_a_session_is_closed(
    client: FlaskClient, services: FakeServices, closed: Exception
) -> None:
    """Issue 16: a stranger told 404, 410 or 409 apart and so learnt whether a session
    existed and what became of it."""
    services.fail_with = closed
    r = client.post("/api/pair/start", json={"v": 1})
    assert r.status_code == 403 and r.json == {"error": "pairing_refused", "detail": REFUSED}


def test_many_addresses_do_not_add_up_past_the_pairing_limit(client: FlaskClient) -> None:
    """Issue 16: the per-address limit was passed with 30 source addresses."""
    began = time.monotonic()
    statuses = [
        client.post(
            "/api/pair/start", json={"v": 1}, environ_base={"REMOTE_ADDR": f"10.0.0.{i}"}
        ).status_code
        for i in range(60)
    ]
    refill = int((time.monotonic() - began) * GLOBAL_RATE_PER_S) + 1
    assert statuses[:GLOBAL_BURST] == [200] * GLOBAL_BURST  # one each: no address is limited
    assert statuses.count(200) <= GLOBAL_BURST + refill and 429 in statuses


def test_a_pairing_flood_does_not_stop_a_member_from_leaving(client: FlaskClient) -> None:
    for i in range(GLOBAL_BURST + 10):
        client.post("/api/pair/start", json={"v": 1}, environ_base={"REMOTE_ADDR": f"10.1.0.{i}"})
    assert client.post("/api/pair/start", json={"v": 1}).status_code == 429
    assert client.post("/api/leave", json={"v": 1}).status_code == 200  # its own buckets


def test_an_unexpected_error_tells_the_client_nothing_of_the_inside(
    client: FlaskClient, services: FakeServices
) -> None:
    services.fail_with = RuntimeError("/home/me/.baton/machine/signing.key: boom")
    r = client.get("/api/whoami", headers=AUTH)
    assert r.status_code == 500 and r.json["error"] == "internal_error"
    assert "signing.key" not in r.text and "RuntimeError" not in r.text
    assert services.counted == ["http.failed.internal_error"]


@pytest.mark.parametrize(
    "exc, status, code",
    [
        (InvalidCard("machine_id: mismatch"), 400, "invalid_card"),
        (NicknameTaken("mini"), 409, "nickname_taken"),
        (Unavailable("slow"), 503, "unavailable"),
        (RuntimeError("boom"), 500, "internal_error"),
    ],
)
def test_errors_map_to_status_codes_in_one_shape(
    client: FlaskClient, services: FakeServices, exc: Exception, status: int, code: str
) -> None:
    services.fail_with = exc
    r = client.get("/api/whoami", headers=AUTH)
    assert r.status_code == status
    assert set(r.json) == {"error", "detail"} and r.json["error"] == code
    if isinstance(exc, BatonError):
        kind = "failed" if status >= 500 else "refused"
        assert services.counted == [f"http.{kind}.{code}"]


def test_unknown_routes_and_methods_are_json_too(client: FlaskClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json["error"] == "not_found"
    r = client.delete("/health")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed"


def test_oversized_bodies_are_refused(client: FlaskClient, services: FakeServices) -> None:
    r = client.post(
        "/api/machines", data=b"x" * 100_000, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and services.added == []


def test_metrics_in_prometheus_text(client: FlaskClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain; version=0.0.4")
    samples = {
        s.name: s.value for f in text_string_to_metric_families(r.get_data(True)) for s in f.samples
    }
    assert samples["baton_wire_dropped_malformed_total"] == 2
    assert samples["baton_wire_received_total"] == 7
    assert samples["baton_status_ok"] == 0  # the fake's parts did not answer


def test_send_posts_or_queues_and_says_which(client: FlaskClient, services: FakeServices) -> None:
    posted = client.post("/api/send", json={"topic": "t1", "text": "hi"}, headers=AUTH)
    assert posted.status_code == 201 and posted.get_json()["message_id"] == 7
    assert services.sent == ("t1", "hi", 10.0)
    queued = client.post(
        "/api/send", json={"topic": "slow", "text": "hi", "wait_s": 0}, headers=AUTH
    )
    assert queued.status_code == 202 and queued.get_json()["status"] == "queued"


@pytest.mark.parametrize(
    "body",
    [
        {"topic": 1, "text": "hi"},
        {"topic": "t1"},
        {"topic": "t1", "text": "hi", "wait_s": 61},
        {"topic": "t1", "text": "hi", "wait_s": True},
        {"topic": "t1", "text": "hi", "wait_s": "5"},
    ],
)
def test_send_refuses_bad_bodies(client: FlaskClient, body: dict[str, Any]) -> None:
    answer = client.post("/api/send", json=body, headers=AUTH)
    assert answer.status_code == 400 and answer.get_json()["error"] == "bad_request"


def test_send_needs_the_token(client: FlaskClient) -> None:
    assert client.post("/api/send", json={"topic": "t", "text": "x"}).status_code == 401


def test_the_door_serves_pairing_leaving_and_health_and_nothing_else(
    services: FakeServices, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the network reaches with --listen: no operator route, no token-free extra,
    and no files (Flask would serve <cwd>/static for an app named like no module)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.txt").write_text("SECRET")
    settings = resolve_settings({}, {}, {})
    for app in (create_door_app(settings, services), create_app(settings, services)):
        assert not any("static" in rule.rule for rule in app.url_map.iter_rules())
        assert app.test_client().get("/static/secret.txt").status_code == 404
    door = create_door_app(settings, services)
    rules = {rule.rule for rule in door.url_map.iter_rules()}
    assert rules == {"/health", "/api/pair/start", "/api/pair/finish", "/api/leave"}
    health = door.test_client().get("/health")
    assert health.status_code == 200 and set(health.get_json()) == {"ok", "machine_id"}
    for path in ("/api/status", "/api/whoami", "/metrics", "/api/pair/session"):
        assert door.test_client().get(path).status_code == 404, path


def test_the_pool_route_needs_the_token_and_answers_503_until_the_pool_is_on(
    client: FlaskClient, services: FakeServices
) -> None:
    assert client.get("/pool").status_code == 401
    off = client.get("/pool", headers=AUTH)
    assert off.status_code == 503 and off.json["error"] == "pool_disabled"
    on = client.post("/api/pool", json={"enabled": True}, headers=AUTH)
    assert on.status_code == 200 and on.json["enabled"] is True
    assert client.get("/pool", headers=AUTH).json == {"enabled": True, "role": "holder"}
    assert client.post("/api/pool", json={"enabled": True}).status_code == 401


@pytest.mark.parametrize(
    "case",
    [
        ("get", "/pool/machines/bravo", None, ("machine", {"machine": "bravo"})),
        ("get", "/pool/placement?topic=1/0", None, ("placement", {"topic": "1/0"})),
        ("post", "/pool/transfer", {"topic": "1/0", "to": "bravo"},
         ("transfer", {"topic": "1/0", "to": "bravo", "confirm": False})),
        ("post", "/pool/transfer", {"topic": "1/0", "to": "m_x", "confirm": True},
         ("transfer", {"topic": "1/0", "to": "m_x", "confirm": True})),
        ("post", "/pool/unpin", {"topic": "1/0"}, ("unpin", {"topic": "1/0"})),
        ("post", "/pool/verify", {}, ("verify", {})),
        ("get", "/session-pool/e2e-results", None, ("e2e", {})),
    ],
)  # fmt: skip
def test_each_pool_route_asks_its_question_with_the_token_and_503_while_off(
    client: FlaskClient, services: FakeServices, case: tuple[Any, ...]
) -> None:
    method, path, body, asked = case
    call = getattr(client, method)
    assert call(path, json=body).status_code == 401
    off = call(path, json=body, headers=AUTH)
    assert off.status_code == 503 and off.json["error"] == "pool_disabled"
    services.pool_on = True
    services.asked = []
    assert call(path, json=body, headers=AUTH).status_code == 200
    assert services.asked == [asked]


@pytest.mark.parametrize(
    ("code", "status"),
    [("unknown_machine", 404), ("unknown_topic", 404), ("already_there", 409),
     ("needs_confirm", 409), ("rate_limited", 429), ("not_holder", 409),
     ("unavailable", 503), ("whatever", 503)],
)  # fmt: skip
def test_a_refused_move_answers_its_code_and_status(
    client: FlaskClient, services: FakeServices, code: str, status: int
) -> None:
    services.pool_on = True
    services.pool_answers = {"transfer": {"error": code, "detail": "why"}}
    r = client.post("/pool/transfer", json={"topic": "1/0", "to": "bravo"}, headers=AUTH)
    assert r.status_code == status
    assert r.json["error"] == (code if code != "whatever" else "unavailable")


@pytest.mark.parametrize(
    ("path", "body"),
    [("/pool/transfer", {"topic": "1/0"}), ("/pool/transfer", {"topic": 1, "to": "b"}),
     ("/pool/transfer", {"topic": "1/0", "to": "b", "confirm": "yes"}),
     ("/pool/transfer", {"topic": "1/0", "to": "b", "extra": 1}),
     ("/pool/transfer", {"topic": "x" * 300, "to": "b"}), ("/pool/unpin", {}),
     ("/pool/unpin", {"topic": "1/0", "to": "b"}), ("/pool/transfer", ["1/0"])],
)  # fmt: skip
def test_a_malformed_move_is_a_400(
    client: FlaskClient, services: FakeServices, path: str, body: object
) -> None:
    services.pool_on = True
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 400, r.json


def test_a_placement_needs_a_topic(client: FlaskClient, services: FakeServices) -> None:
    services.pool_on = True
    assert client.get("/pool/placement", headers=AUTH).status_code == 400


@pytest.mark.parametrize("body", [{}, {"enabled": "yes"}, {"enabled": 1}, [], {"enabled": None}])
def test_turning_the_pool_on_or_off_takes_a_boolean(client: FlaskClient, body: object) -> None:
    r = client.post("/api/pool", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json["error"] in ("bad_request", "invalid_json")


def test_only_the_holder_turns_the_pool_on(client: FlaskClient, services: FakeServices) -> None:
    services.holding = False
    r = client.post("/api/pool", json={"enabled": True}, headers=AUTH)
    assert r.status_code == 409 and r.json["error"] == "not_holder" and "m_b" in r.json["detail"]
    assert not services.pool_on
