"""Real nodes on loopback: CURVE pings, strangers refused, restarts, clean stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from baton.client import running_node
from tools.mesh import Machine, Mesh, pid_alive, wait_for

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
    m.pids.update(p for p in second.values() if p)
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


def test_down_when_not_running_says_so(machine: Machine) -> None:
    assert machine.json("down") == {"stopped": False, "running": False}


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
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
        machine.pids.update({proc.pid, info["pid"]})
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:  # the terminal sends SIGINT to the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: not pid_alive(info["pid"]), 30, "the node to exit")
        assert running_node(machine.paths) is None
        assert not machine.paths.node_run_file.exists()
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
    assert {"role", "peers"} <= set(status)
    assert all({"machine_id", "reachable", "rtt_ms"} <= set(p) for p in status["peers"])
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
