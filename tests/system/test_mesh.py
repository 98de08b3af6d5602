"""Real nodes on loopback: CURVE pings, strangers refused, restarts, clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from baton import PROTOCOL_MIN, PROTOCOL_VERSION, __version__
from baton.demo.devmesh import Machine, Mesh, free_port, pid_alive
from baton.node.client import running_node
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def counters(m: Machine) -> dict[str, int]:
    return dict(m.status()["counters"])


def test_two_machines_ping_each_other_over_curve(make_mesh: Callable[..., Mesh]) -> None:
    mesh = make_mesh(2)
    mesh.wait_all_reachable()
    for me, other in ((mesh[0], mesh[1]), (mesh[1], mesh[0])):
        status = me.status()
        [peer] = status["peers"]
        assert peer["machine_id"] == other.card()["machine_id"]
        assert peer["reachable"] is True and peer["rtt_ms"] > 0
        assert status["counters"]["wire.received"] > 0
        assert status["role"] in {"awake", "standby"}


def test_a_machine_whose_key_is_not_registered_cannot_get_through(
    make_mesh: Callable[..., Mesh],
) -> None:
    mesh = make_mesh(2)
    mesh.wait_all_reachable()
    outsider = make_mesh(1, link=False, names=["outsider"])[0]
    # The outsider knows m1 and dials it; m1 has never admitted the outsider's key.
    outsider.json("machines", "add", "-", input=json.dumps(mesh[0].card()))
    wait_for(lambda: counters(mesh[0]).get("wire.auth_denied", 0) >= 1, 30, "m1 to refuse")
    wait_for(lambda: outsider.status()["peers"][0]["pings"] >= 3, 30, "outsider's pings")
    [view] = outsider.status()["peers"]
    assert view["pongs"] == 0 and view["reachable"] is False
    m1_ids = {m["machine_id"] for m in mesh[0].json("machines")}
    assert outsider.card()["machine_id"] not in m1_ids
    mesh.wait_all_reachable(timeout=10)  # the mesh carries on
    assert counters(mesh[0]).get("wire.received", 0) > 0


def test_kill_9_of_the_node_is_followed_by_a_restart(make_mesh: Callable[..., Mesh]) -> None:
    m = make_mesh(1, link=False)[0]
    first = m.live_pids()
    assert first["node"] and first["supervisor"]
    os.kill(first["node"], signal.SIGKILL)
    wait_for(
        lambda: (running_node(m.paths) or {}).get("pid") not in (None, first["node"]),
        60,
        "the supervisor to restart the node",
    )
    second = m.live_pids()
    assert second["supervisor"] == first["supervisor"] and second["node"] != first["node"]
    assert m.card()["running"] is True
    m.remember(*second.values())
    down = m.json("down")
    assert down["stopped"] is True and down["killed"] is False
    assert not any(pid_alive(p) for p in (*first.values(), *second.values()) if p)
    assert running_node(m.paths) is None


def test_a_node_whose_supervisor_is_killed_stops_too(make_mesh: Callable[..., Mesh]) -> None:
    m = make_mesh(1, link=False)[0]
    pids = m.live_pids()
    assert pids["node"] and pids["supervisor"]
    os.kill(pids["supervisor"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(pids["node"]), 30, "the orphaned node to stop")
    assert running_node(m.paths) is None


def test_when_down_returns_nothing_the_machine_ran_is_left(
    make_mesh: Callable[..., Mesh],
) -> None:
    """Beside the node, the supervisor runs multiprocessing's resource tracker, which
    exits on its own only after the supervisor has: a stopped one never would. Stopped
    here, it is gone all the same when `baton down` returns."""
    m = make_mesh(1, link=False)[0]
    supervisor = psutil.Process(m.live_pids()["supervisor"])
    ran = [supervisor, *supervisor.children(recursive=True)]
    [tracker] = [p for p in ran if "resource_tracker" in " ".join(p.cmdline())]
    m.remember(*(p.pid for p in ran))  # the fixture kills whatever is left, test failed or not
    tracker.suspend()
    assert m.json("down")["stopped"] is True
    left = [p for p in ran if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"left running: {[(p.pid, p.cmdline()) for p in left]}"


def test_down_when_not_running_says_so(machine: Machine) -> None:
    assert machine.json("down") == {"stopped": False, "running": False}


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c", "hangup"])
def test_foreground_up_stops_in_order_on_sigterm_and_ctrl_c(machine: Machine, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "baton", "up", "--home", str(machine.home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        info = wait_for(lambda: running_node(machine.paths), 60, "the node to come up")
        machine.remember(proc.pid, info["pid"])
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:  # the terminal signals the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGHUP)
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: not pid_alive(info["pid"]), 30, "the node to exit")
        assert running_node(machine.paths) is None
        assert not machine.paths.node_run_file.exists(), "the node did not stop in order"
        assert '"node stopped"' in machine.paths.logs_dir.joinpath("node.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]


def test_whoami_machines_status_and_up_contracts(make_mesh: Callable[..., Mesh]) -> None:
    mesh = make_mesh(2)
    m = mesh[0]
    who = m.json("whoami")
    assert {"machine_id", "nickname", "role", "running"} <= set(who) and who["running"] is True
    rows = m.json("machines")
    assert len(rows) == 2
    assert all({"machine_id", "nickname", "role", "status"} <= set(r) for r in rows)
    mesh.wait_all_reachable()
    status = m.json("status")
    assert {"role", "holder", "epoch", "deadline_ms", "peers"} <= set(status)
    assert all({"machine_id", "reachable", "rtt_ms"} <= set(p) for p in status["peers"])
    # each machine's version, as it announced it, signed; the mesh's protocol; no skew
    wait_for(lambda: all(r["version"] == __version__ for r in m.json("machines")), 30, "versions")
    assert all(r["protocols"] == [PROTOCOL_MIN, PROTOCOL_VERSION] for r in m.json("machines"))
    versions = m.json("status")["versions"]
    assert versions == {"version": __version__, "protocols": [PROTOCOL_MIN, PROTOCOL_VERSION],
                        "mesh_protocol": PROTOCOL_VERSION, "skew": []}  # fmt: skip
    said = m.baton("status").stdout
    assert f"version: baton {__version__}" in said and "ALARM" not in said
    # no lease store: said so, no epoch, nobody takes over by itself
    assert status["lease_store"] is None and status["epoch"] == 0
    assert "no lease store" in status["failover"]
    m.json("down")
    offline = m.json("whoami")
    assert offline["running"] is False and offline["machine_id"] == who["machine_id"]
    assert len(m.json("machines")) == 2, "the registry is read from the home when stopped"


def test_baton_home_selects_the_machine(machine: Machine, tmp_path: Path) -> None:
    env = {**os.environ, "BATON_HOME": str(machine.home)}
    out = subprocess.run(
        [sys.executable, "-m", "baton", "whoami", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["nickname"] == machine.name


def test_the_cli_never_sends_its_token_through_a_proxy(make_mesh: Callable[..., Mesh]) -> None:
    m = make_mesh(1, link=False)[0]
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.settimeout(0.5)
        proxy = f"http://127.0.0.1:{trap.getsockname()[1]}"
        env = {"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""}
        out = m.baton("status", "--json", env_extra=env)
        assert json.loads(out.stdout)["nickname"] == m.name
        with pytest.raises(TimeoutError):
            trap.accept()  # nobody ever knocked


def test_an_ipv6_loopback_mesh_works(make_mesh: Callable[..., Mesh]) -> None:
    mesh = make_mesh(2, up=False)
    for m in mesh.machines:
        http, wire = free_port("::1"), free_port("::1")
        info = m.json("up", "--detach", "--http", f"[::1]:{http}", "--wire", f"[::1]:{wire}")
        m.remember(info["pid"], info["node_pid"])
        assert info["wire"] == f"tcp://[::1]:{wire}" and info["http"] == f"http://[::1]:{http}"
    mesh.link()
    mesh.wait_all_reachable()


def test_an_address_that_cannot_be_bound_is_a_config_error_not_a_crash_loop(
    machine: Machine,
) -> None:
    proc = machine.baton("up", "--detach", "--json", "--wire", "192.0.2.1:0", check=False)
    err = json.loads(proc.stdout)
    assert proc.returncode == 78 and err["error"] == "config_error", err
    assert "wire" in err["detail"] and "192.0.2.1" in err["detail"]
    assert machine.paths.logs_dir.joinpath("node.log").read_text().count("cannot start") == 1
