"""`baton join` when the network misbehaves: silence, a lost answer, and what crosses it."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import baton.pairing.joiner
from baton.core.errors import WrongCode
from baton.demo.devmesh import Machine, Mesh, free_port
from baton.pairing.joiner import join as run_join

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


@pytest.fixture
def host(make_mesh: Callable[..., Mesh]) -> Machine:
    return make_mesh(1, link=False, names=["alpha"])[0]


def ports() -> list[str]:
    return ["--http", f"127.0.0.1:{free_port()}", "--wire", f"127.0.0.1:{free_port()}"]


def test_a_url_that_accepts_but_never_answers_times_out_cleanly(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes connections; nobody ever reads or answers
    try:
        fresh = Machine("delta", tmp_path / "delta")
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = fresh.baton(
            "join", url, "--code", "maple-otter-4821", "--name", "delta", "--timeout", "1",
            "--json", check=False, timeout=60,
        )  # fmt: skip
    finally:
        silent.close()
    err = json.loads(proc.stdout)
    assert proc.returncode == 16 and err["error"] == "unavailable", err
    assert "timed out" in err["detail"] and not fresh.home.exists()


class _DropFinishAnswer(http.server.BaseHTTPRequestHandler):
    """Forwards to the host; /api/pair/finish reaches it, but its answer is dropped."""

    target = ""

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        request = urllib.request.Request(self.target + self.path, data=body, method=self.command)
        request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        if self.path == "/api/pair/finish":
            self.close_connection = True  # the host admitted us; we never hear of it
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lossy_proxy(host: Machine) -> Iterator[str]:
    handler = type("Handler", (_DropFinishAnswer,), {"target": host.card()["http"]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_lost_finish_answer_keeps_the_identity_so_a_retry_is_the_same_machine(
    host: Machine, lossy_proxy: str, tmp_path: Path
) -> None:
    fresh = Machine("delta", tmp_path / "delta")
    session = host.json("pair")
    proc = fresh.baton(
        "join", lossy_proxy, "--code", session["code"], "--name", "delta", *ports(), "--json",
        "--yes", check=False,
    )  # fmt: skip
    err = json.loads(proc.stdout)
    assert proc.returncode == 16 and err["error"] == "unavailable", err
    assert "identity is kept" in err["detail"] and fresh.paths.identity.exists()
    [ghost] = [r for r in host.json("machines") if r["nickname"] == "delta"]
    retry = host.json("pair")
    result = fresh.json("join", retry["url"], "--code", retry["code"], "--yes")
    assert result["ok"] is True and result["machine_id"] == ghost["machine_id"]
    rows = [r for r in host.json("machines") if r["nickname"] == "delta"]
    assert [(r["machine_id"], r["status"], r["role"]) for r in rows] == [
        (ghost["machine_id"], "active", "standby")
    ]


def test_a_wrong_code_stops_before_the_card_is_sent(host: Machine, tmp_path: Path) -> None:
    """The joiner checks the host's confirmation first: a host that does not share the
    code never receives this machine's sealed card."""
    session = host.json("pair")
    words, digits = session["code"].rsplit("-", 1)
    wrong = f"{words}-{(int(digits) + 1) % 10000:04d}"
    fresh = Machine("delta", tmp_path / "delta")
    proc = fresh.baton(
        "join", session["url"], "--code", wrong, "--name", "delta", *ports(), "--json",
        check=False,
    )  # fmt: skip
    err = json.loads(proc.stdout)
    assert proc.returncode == 10 and err["detail"] == "wrong code; 2 attempts left", err
    assert host.counter("http.refused.wrong_code") == 0  # no /finish ever reached the host
    assert not fresh.home.exists()


def test_the_code_never_crosses_the_network(
    host: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request and answer of a real join, right code and wrong, is recorded; no
    part of the code is in any of them."""
    seen: list[str] = []
    real = baton.pairing.joiner.http_json

    def recording(url: str, method: str = "GET", body: Any = None, **kw: Any) -> Any:
        seen.append(json.dumps(body))
        answer = real(url, method, body, **kw)
        seen.append(json.dumps(answer))
        return answer

    monkeypatch.setattr(baton.pairing.joiner, "http_json", recording)
    session = host.json("pair")
    code = session["code"]
    words, digits = code.rsplit("-", 1)
    wrong = f"{words}-{(int(digits) + 1) % 10000:04d}"
    config = {"http": f"127.0.0.1:{free_port()}", "wire": f"127.0.0.1:{free_port()}"}
    with pytest.raises(WrongCode):
        run_join(tmp_path / "delta", session["url"], wrong, "delta", config=config)
    result = run_join(tmp_path / "delta", session["url"], code, "delta", config=config)
    assert result["ok"] is True and len(seen) >= 8  # health, start and finish, twice
    secrets = {code, wrong, words, digits, wrong.rsplit("-", 1)[1]}
    leaks = [(s, msg) for msg in seen for s in secrets if s in msg]
    assert not leaks, leaks
