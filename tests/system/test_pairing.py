"""Pairing real machines: codes, SPAKE2 over HTTP, and every way it must fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from baton.core.pairing import WORDS
from baton.demo.devmesh import Machine, Mesh, free_port
from baton.node.client import NodeClient
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


SOME_CODE = f"{WORDS[0]}-{WORDS[1]}-0042"


def pair(host: Machine) -> dict[str, Any]:
    return dict(host.json("pair"))


def join(m: Machine, url: str, code: str, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = m.baton("join", url, "--code", code, "--json", "--yes", *extra, check=False)
    return proc.returncode, json.loads(proc.stdout)


def wrong(code: str) -> str:
    words, digits = code.rsplit("-", 1)
    return f"{words}-{(int(digits) + 1) % 10000:04d}"


@pytest.fixture
def host_and_joiners(make_mesh: Callable[..., Mesh]) -> tuple[Machine, list[Machine]]:
    host = make_mesh(1, link=False, names=["alpha"])[0]
    joiners = make_mesh(2, up=False, names=["bravo", "charlie"]).machines
    return host, joiners


def test_two_machines_join_and_reach_the_host(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    host, joiners = host_and_joiners
    for m in joiners:
        session = pair(host)
        assert set(session) == {"code", "expires_at", "url"}
        code, result = join(m, session["url"], session["code"])
        assert code == 0, result
        assert result["ok"] is True and len(result["sas"].replace(" ", "")) >= 6
        me = next(x for x in result["mesh"] if x["nickname"] == m.name)
        assert me["role"] == "standby"
        m.up()
    expected = {"alpha": "awake", "bravo": "standby", "charlie": "standby"}
    assert _roles(host) == expected
    for m in joiners:  # bravo joined before charlie: it learns of charlie from alpha's roster
        wait_for(lambda m=m: _roles(m) == expected, 60, f"{m.name} to know all three")
    for m in (host, *joiners):
        others = set(expected) - {m.name}
        wait_for(lambda m=m, o=others: all(_reaches(m, x) for x in o), 60, f"{m.name}'s pings")


def host_state(host: Machine) -> str:
    """The session's state as the operator sees it (a joiner is told only "refused")."""
    return str(NodeClient(host.home).get("/api/pair/session")["state"])


def _roles(m: Machine) -> dict[str, str]:
    return {r["nickname"]: r["role"] for r in m.json("machines")}


def _reaches(m: Machine, nickname: str) -> bool:
    return any(p["nickname"] == nickname and p["reachable"] for p in m.status()["peers"])


def test_three_wrong_codes_burn_the_session(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    host, (bravo, _) = host_and_joiners
    session = pair(host)
    seen = []
    for left in (2, 1, 0):
        code, err = join(bravo, session["url"], wrong(session["code"]))
        assert code == 10 and err["error"] == "wrong_code", err
        assert (f"{left} attempt" if left else "no attempts left") in err["detail"]
        seen.append(err["detail"])
    code, err = join(bravo, session["url"], session["code"])
    assert code == 11 and err["error"] == "pairing_refused", err
    assert host_state(host) == "burned"
    assert len(host.json("machines")) == 1
    assert len(set(seen)) == 3


def test_a_used_code_cannot_be_used_again(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    host, (bravo, charlie) = host_and_joiners
    session = pair(host)
    assert join(bravo, session["url"], session["code"])[0] == 0
    code, err = join(charlie, session["url"], session["code"])
    assert code == 11 and err["error"] == "pairing_refused", err
    assert host_state(host) == "consumed"


def test_an_expired_code_fails(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    host, (bravo, _) = host_and_joiners
    session = pair(host)
    doc = json.loads(host.paths.pairing_session.read_text())
    doc["session"]["created_at"] -= 200
    doc["session"]["expires_at"] -= 200
    host.paths.pairing_session.write_text(json.dumps(doc))  # as if 200 s had passed
    code, err = join(bravo, session["url"], session["code"])
    assert code == 11 and err["error"] == "pairing_refused", err
    assert host_state(host) == "expired"


def test_join_without_a_session_and_with_bad_codes(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    host, (bravo, _) = host_and_joiners
    url = host.card()["http"]
    code, err = join(bravo, url, SOME_CODE)
    assert code == 11 and err["error"] == "pairing_refused", err
    code, err = join(bravo, url, "not a code")
    assert code == 1 and err["error"] == "invalid_code"


def test_join_refuses_a_url_that_is_not_a_baton_node(
    host_and_joiners,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    _, (bravo, _) = host_and_joiners
    import http.server

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Other)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, err = join(bravo, f"http://127.0.0.1:{server.server_port}", SOME_CODE)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert code == 15 and err["error"] == "not_a_baton_node", err
    code, err = join(bravo, f"http://127.0.0.1:{free_port()}", SOME_CODE)
    assert code == 16 and err["error"] == "unavailable" and "Traceback" not in err["detail"]


def test_join_can_create_the_home(make_mesh: Callable[..., Mesh], tmp_path: Path) -> None:
    host = make_mesh(1, link=False, names=["alpha"])[0]
    session = pair(host)
    fresh = Machine("delta", tmp_path / "delta")
    http, wire = free_port(), free_port()
    code, result = join(
        fresh,
        session["url"],
        session["code"],
        "--name",
        "delta",
        "--http",
        f"127.0.0.1:{http}",
        "--wire",
        f"127.0.0.1:{wire}",
    )
    assert code == 0, result
    info = fresh.up()
    assert info["http"] == f"http://127.0.0.1:{http}"
    fresh.stop()


def test_a_failed_join_that_created_a_home_leaves_nothing(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    host = make_mesh(1, link=False, names=["alpha"])[0]
    session = pair(host)
    fresh = Machine("echo", tmp_path / "echo")
    code, err = join(fresh, session["url"], wrong(session["code"]), "--name", "echo")
    assert code == 10 and err["error"] == "wrong_code" and not fresh.home.exists()


def _pair_verify(host: Machine, joiner: Machine, answer: str) -> tuple[dict, int, dict, int]:
    """Run `pair --verify` on host and `join` on joiner; the operator answers ``answer``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    cmd = [sys.executable, "-m", "baton", "pair", "--verify", "--json", "--home", str(host.home)]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None and proc.stdin is not None
        session = json.loads(proc.stderr.readline())
        proc.stdin.write(answer + "\n")
        proc.stdin.flush()
        joined: list[tuple[int, dict]] = []
        worker = threading.Thread(
            target=lambda: joined.append(join(joiner, session["url"], session["code"]))
        )
        worker.start()
        out, _ = proc.communicate(timeout=120)
        worker.join(120)
        assert joined, "join did not finish"
        return json.loads(out), proc.returncode, joined[0][1], joined[0][0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_pair_verify_admits_only_after_the_operator_confirms_the_sas(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    host, (bravo, _) = host_and_joiners
    pair_out, pair_code, join_out, join_code = _pair_verify(host, bravo, "y")
    assert pair_code == 0 and join_code == 0, (pair_out, join_out)
    assert pair_out["accepted"] is True and pair_out["sas"] == join_out["sas"]
    assert "bravo" in {r["nickname"] for r in host.json("machines")}


def test_pair_verify_refused_burns_the_code(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    host, (bravo, charlie) = host_and_joiners
    pair_out, pair_code, join_out, join_code = _pair_verify(host, bravo, "n")
    assert pair_code == 1 and pair_out["accepted"] is False
    assert join_code == 1 and "refused" in join_out["detail"], join_out
    assert {r["nickname"] for r in host.json("machines")} == {"alpha"}
    assert not bravo.paths.registry.exists(), "a refused joiner writes no roster"
    code, err = join(charlie, pair_out["url"], pair_out["code"])
    assert code == 11 and err["error"] == "pairing_refused", err
    assert host_state(host) == "burned"


# --- what a joiner takes from the host (issue 16) -------------------------------------

CODE_AGENT = "python:tests.agents.sample_agents:ok"


@pytest.fixture
def code_agent_host(make_mesh: Callable[..., Mesh]) -> tuple[Machine, Machine]:
    host = make_mesh(1, up=False, names=["alpha"])[0]
    with host.paths.config.open("a") as config:
        config.write(f'agent = "{CODE_AGENT}"\n')
    host.up()
    return host, make_mesh(1, up=False, names=["bravo"])[0]


def test_a_code_agent_from_the_host_is_refused_before_admission_unless_trusted(
    code_agent_host: tuple[Machine, Machine],
) -> None:
    """Issue 16: a joiner took the host's agent without a word; whoever knew the code
    and sat between them could set `cmd:sh -c ...` and run it on the joiner."""
    host, joiner = code_agent_host
    session = pair(host)
    proc = joiner.baton(
        "join", session["url"], "--code", session["code"], "--json", "--yes", check=False
    )  # fmt: skip
    err = json.loads(proc.stdout)
    assert proc.returncode == 1 and "--trust-agent" in err["detail"], err
    assert CODE_AGENT in proc.stderr  # it showed what it was offered
    assert [r["nickname"] for r in host.json("machines")] == ["alpha"]  # not admitted
    assert not joiner.paths.registry.exists() and CODE_AGENT not in config(joiner)
    session = pair(host)
    code, result = join(joiner, session["url"], session["code"], "--trust-agent")
    assert code == 0 and result["ok"] is True, result
    assert CODE_AGENT in config(joiner)


def config(m: Machine) -> str:
    return m.paths.config.read_text()


def test_without_a_terminal_or_yes_a_joiner_asks_nothing_and_joins_nothing(
    host_and_joiners,  # type: ignore[no-untyped-def]
) -> None:
    host, (bravo, _) = host_and_joiners
    session = pair(host)
    proc = bravo.baton("join", session["url"], "--code", session["code"], "--json", check=False)
    err = json.loads(proc.stdout)
    assert proc.returncode == 1 and "--yes" in err["detail"], err
    assert "lease_store" in proc.stderr and "agent" in proc.stderr
    assert [r["nickname"] for r in host.json("machines")] == ["alpha"]
    assert not bravo.paths.registry.exists()


def test_a_joiner_that_sees_other_digits_writes_nothing(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    """`join --verify` asks at a terminal (a pty here): yes to the settings, then no to
    "Does the awake machine show ...?": no roster, no adopted setting, and it says the
    awake machine may have admitted a stranger."""
    host, (bravo, _) = host_and_joiners
    session = pair(host)
    before = config(bravo)
    master, slave = os.openpty()
    try:
        os.write(master, b"y\nn\n")  # the two answers, read a line at a time
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "baton", "join", session["url"], "--code",
             session["code"], "--verify", "--json", "--home", str(bravo.home)],
            stdin=slave, capture_output=True, text=True, env=env, timeout=90,
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    err = json.loads(proc.stdout)
    assert proc.returncode == 1 and "differ" in err["detail"], (err, proc.stderr)
    assert "Adopt these settings" in proc.stderr and "Does the awake machine show" in proc.stderr
    assert not bravo.paths.registry.exists() and config(bravo) == before


def test_a_machine_joins_while_its_node_runs(host_and_joiners) -> None:  # type: ignore[no-untyped-def]
    """The node restarts itself into the mesh (the join applied at its start), under the
    same supervisor, with the host's settings adopted."""
    host, (bravo, _) = host_and_joiners
    before = bravo.up()
    assert _roles(bravo) == {"bravo": "awake"}  # a mesh of its own, running
    session = pair(host)
    code, result = join(bravo, session["url"], session["code"])
    assert code == 0 and result["restarted"] is True, result
    after = bravo.live_pids()
    assert after["supervisor"] == before["pid"] and after["node"] != before["node_pid"]
    bravo.remember(after["node"])
    assert not bravo.paths.pending_join.exists()
    assert _roles(bravo) == {"alpha": "awake", "bravo": "standby"}
    wait_for(lambda: _reaches(host, "bravo") and _reaches(bravo, "alpha"), 60, "each other")
