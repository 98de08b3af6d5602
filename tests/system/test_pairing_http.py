"""The pairing endpoints of a real node, driven by hand: replays, races, bad bodies,
taken nicknames and the rate limit."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import nacl.public
import nacl.signing
import pytest

from baton.core.identity import PublicIdentity
from baton.demo.devmesh import Machine, Mesh, free_port
from baton.wire.pake import JoinerPake, Side, b64d, b64e, possession_statement

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


def post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def card(nickname: str) -> tuple[dict[str, str], nacl.signing.SigningKey]:
    sk, ek = nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate()
    me = PublicIdentity.from_keys(nickname, bytes(sk.verify_key), bytes(ek.public_key))
    port = free_port()
    doc = {**me.to_dict(), "wire": f"tcp://127.0.0.1:{port}", "http": f"http://127.0.0.1:{port}"}
    return doc, sk


class Run:
    """One joiner's protocol run, split so tests can replay and race its steps."""

    def __init__(self, url: str, code: str) -> None:
        self.url = url
        self.pake = JoinerPake(code)
        status, self.started = post(
            url + "/api/pair/start", {"v": 1, "joiner_message": b64e(self.pake.message)}
        )
        assert status == 200, self.started
        self.keys = self.pake.finish(b64d(self.started["host_message"], "host_message"))

    def proof(self, key: nacl.signing.SigningKey, transcript: bytes | None = None) -> str:
        statement = possession_statement(transcript or self.keys.transcript)
        return b64e(key.sign(statement).signature)

    def finish_body(self, nickname: str) -> dict[str, Any]:
        doc, key = card(nickname)
        return self.sealed_body({**doc, "proof": self.proof(key)})

    def sealed_body(self, doc: dict[str, Any]) -> dict[str, Any]:
        sealed = self.keys.seal(json.dumps(doc).encode(), Side.HOST)
        return {
            "v": 1,
            "run_id": self.started["run_id"],
            "joiner_confirmation": b64e(self.keys.joiner_confirmation()),
            "sealed_card": b64e(sealed),
        }

    def finish(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return post(self.url + "/api/pair/finish", body)


@pytest.fixture
def host(make_mesh: Callable[..., Mesh]) -> Machine:
    return make_mesh(1, link=False, names=["alpha"])[0]


def test_a_replayed_finish_is_refused(host: Machine) -> None:
    session = host.json("pair")
    run = Run(session["url"], session["code"])
    body = run.finish_body("bravo")
    status, answer = run.finish(body)
    assert status == 200 and "sealed_roster" in answer
    status, answer = run.finish(body)
    assert status == 400 and answer["error"] == "pairing_error"
    assert "already finished" in answer["detail"]
    assert len(host.json("machines")) == 2


def test_two_joiners_racing_with_one_code_exactly_one_wins(host: Machine) -> None:
    session = host.json("pair")
    runs = [Run(session["url"], session["code"]) for _ in range(2)]
    bodies = [run.finish_body(name) for run, name in zip(runs, ["bravo", "charlie"], strict=True)]
    results: list[tuple[int, dict[str, Any]]] = []
    barrier = threading.Barrier(2)

    def go(i: int) -> None:
        barrier.wait(10)
        results.append(runs[i].finish(bodies[i]))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(status for status, _ in results) == [200, 409]
    loser = next(answer for status, answer in results if status == 409)
    assert loser["error"] == "pairing_consumed"
    assert len(host.json("machines")) == 2


def test_a_run_finishing_after_another_joined_is_told_the_code_is_used(host: Machine) -> None:
    session = host.json("pair")
    first, second = Run(session["url"], session["code"]), Run(session["url"], session["code"])
    assert first.finish(first.finish_body("bravo"))[0] == 200
    status, answer = second.finish(second.finish_body("charlie"))
    assert status == 409 and answer["error"] == "pairing_consumed", answer


def test_a_taken_nickname_is_refused_without_using_up_the_code(host: Machine) -> None:
    session = host.json("pair")
    run = Run(session["url"], session["code"])
    status, answer = run.finish(run.finish_body("alpha"))
    assert status == 409 and answer["error"] == "nickname_taken"
    retry = Run(session["url"], session["code"])
    status, answer = retry.finish(retry.finish_body("bravo"))
    assert status == 200, answer


@pytest.mark.parametrize("forgery", ["missing", "another key", "another run", "not base64"])
def test_a_card_without_proof_of_its_key_is_refused(host: Machine, forgery: str) -> None:
    """A joiner who knows the code cannot enrol a signing key it does not hold."""
    session = host.json("pair")
    run = Run(session["url"], session["code"])
    doc, key = card("bravo")
    other_run = Run(session["url"], session["code"])
    proofs = {
        "missing": None,
        "another key": run.proof(nacl.signing.SigningKey.generate()),
        "another run": run.proof(key, other_run.keys.transcript),
        "not base64": "!!",
    }
    if proofs[forgery] is not None:
        doc = {**doc, "proof": proofs[forgery]}
    status, answer = run.finish(run.sealed_body(doc))
    assert status == 400 and answer["error"] == "pairing_error", answer
    assert [m["nickname"] for m in host.json("machines")] == ["alpha"]
    # the code was not consumed: the last attempt, with a true card, still joins
    retry = Run(session["url"], session["code"])
    status, answer = retry.finish(retry.finish_body("bravo"))
    assert status == 200, answer
    assert host.counter("http.refused.pairing_error") >= 1


@pytest.mark.parametrize(
    "path, raw",
    [
        ("/api/pair/start", b"{not json"),
        ("/api/pair/start", b"[1, 2]"),
        ("/api/pair/start", json.dumps({"v": 1}).encode()),
        ("/api/pair/start", json.dumps({"v": 1, "joiner_message": 7}).encode()),
        ("/api/pair/start", json.dumps({"v": 2, "joiner_message": "AAAA"}).encode()),
        ("/api/pair/start", json.dumps({"v": 1, "joiner_message": "!!notb64"}).encode()),
        ("/api/pair/finish", json.dumps({"v": 1, "run_id": "x"}).encode()),
        ("/api/pair/start", b"{" + b" " * 100_000 + b"}"),
    ],
)
def test_malformed_bodies_get_a_clear_error(host: Machine, path: str, raw: bytes) -> None:
    url = host.card()["http"]
    host.json("pair")
    status, answer = post(url + path, None, raw=raw)
    assert status in {400, 403, 413} and set(answer) == {"error", "detail"}, answer
    # a start's body that parses but is no SPAKE2 message is refused like any start
    # (issue 16: a stranger learns nothing of the session from a refusal)
    assert status != 403 or answer["error"] == "pairing_refused", answer
    assert host.json("whoami")["running"] is True


def test_the_pairing_endpoints_are_rate_limited(host: Machine) -> None:
    url = host.card()["http"] + "/api/pair/start"
    statuses = [post(url, {"v": 1, "joiner_message": "AAAA"})[0] for _ in range(15)]
    assert 429 in statuses and statuses.index(429) <= 10
    status, answer = post(url, {"v": 1, "joiner_message": "AAAA"})
    assert status == 429 and answer["error"] == "rate_limited"
