"""Versions with real processes of three builds side by side (issue 21): this checkout
(its version, protocol 1), a build that speaks protocols 1 and 2, and one that speaks
only 2, each installed in a virtual environment of its own (tests/system/builds.py).
The mesh runs at protocol 1 (the lowest newest protocol among them). The build that
speaks only 2 cannot speak it: its envelopes are refused and counted, never misread;
it never holds the lease, not even as the only machine left, nor takes a handoff; and
every view says why."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from baton import __version__
from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import SYNC_POLL_S, Machine, Mesh
from tests.system.builds import build, environment, install, wheel
from tests.system.chat_kit import (
    answered,
    check_exactly_once,
    failed_over,
    loading,
    reported_ambiguous,
    start_mesh,
)
from tests.system.chat_kit import replies as chat_replies
from tests.waits import holds_for, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(400)]

TTL_MS = 3000
MID = ("0.2.0", (1, 2))  # the next release: speaks the old protocol and a new one
NEW = ("0.3.0", (2, 2))  # a later one: the old protocol dropped


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("builds")
    return {"mid": build(root, *MID), "new": build(root, *NEW)}


def skew_of(m: Machine) -> list[str]:
    return list(m.status()["versions"]["skew"])


def test_a_machine_that_cannot_speak_the_mesh_protocol_never_holds_and_says_why(
    make_mesh: Callable[..., Mesh], builds: dict[str, str], tmp_path: Path
) -> None:
    mesh = make_mesh(3, names=["alpha", "bravo", "charlie"], lease_ttl_ms=TTL_MS, up=False)
    alpha, bravo, charlie = mesh.machines
    bravo.python, charlie.python = builds["mid"], builds["new"]
    mesh.pair_up()

    # alpha holds; each joiner's card carried its signed announcement, so alpha knows
    # what both run, though charlie cannot speak protocol 1 and alpha never reads a word
    # of it on the wire
    wait_for(lambda: any("bravo runs baton 0.2.0" in s for s in skew_of(alpha)), 60, "bravo")
    versions = alpha.status()["versions"]
    assert versions["version"] == __version__ and versions["mesh_protocol"] == 1
    said = "charlie (baton 0.3.0, protocols 2-2) cannot speak protocol 1, the one the mesh runs at"
    assert said in versions["skew"], versions
    wait_for(lambda: alpha.counter("wire.dropped.unknown_version") > 0, 60, "charlie refused")
    assert bravo.status()["versions"] == {
        "version": "0.2.0", "protocols": [1, 2], "mesh_protocol": 1,
        "skew": bravo.status()["versions"]["skew"],
    }  # fmt: skip
    rows = {r["nickname"]: r for r in alpha.json("machines")}
    assert (rows["bravo"]["version"], rows["bravo"]["protocols"]) == ("0.2.0", [1, 2])

    # charlie says why it may not hold, and refuses a wakeup at once, for good
    said = charlie.status()
    assert said["role"] == "standby" and said["may_take_over"] is False
    assert "cannot speak protocol 1" in said["unable"], said["unable"]
    assert "MAY NOT HOLD" in charlie.baton("status").stdout
    woken = charlie.baton("wakeup", "--json", check=False)
    assert woken.returncode != 0 and "cannot speak protocol 1" in woken.stdout, woken.stdout

    # the holder stops (a clean release), then the next: charlie, the only one left,
    # would take the released lease at once; it does not
    alpha.stop()
    wait_for(lambda: bravo.status()["role"] == "awake", 60, "bravo to take over")
    bravo.stop()
    wait_for(lambda: charlie.status()["holder"] is None, 60, "charlie to see the release")
    holds_for(
        lambda: (s := charlie.status())["role"] == "standby" and s["epoch"] < 3,
        3 * TTL_MS / 1000,
        "charlie took over",
    )
    assert "cannot speak protocol 1" in charlie.status()["unable"]
    alarms = [a for a in charlie.status()["alarms"] if a["kind"] == "version_skew"]
    assert len(alarms) == 1


BROKEN = {  # a new version whose node cannot start
    "baton/node/process.py": {
        r"^(\s+)node = Node\.start\(paths\.root, flags\)$": r"\1raise RuntimeError('broken')"
    }
}


def test_a_restart_after_an_update_runs_the_new_version_and_one_on_the_old_says_so(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    """The UpdateRestartHandshake: `baton restart` run from another environment
    (updated there, not where the node runs) finds the node on the old version, and
    says so; updated where the node imports it from, the node comes up new; a restart
    with nothing to update is judged as one."""
    old = build(tmp_path, "0.4.0", (1, 1))
    elsewhere = build(tmp_path, "0.4.1", (1, 1))  # the update, in another environment
    [m] = make_mesh(1, up=False).machines
    m.python = old
    m.up()
    m.python = elsewhere  # the operator's `baton` is the updated one, the node's is not
    woken = m.baton("restart", "--json", check=False)
    assert woken.returncode == 1 and "came up on the old version 0.4.0" in woken.stdout
    said = m.status()["restart"]
    assert (said["ok"], said["kind"], said["expected"]) == (False, "old", "0.4.1")
    assert "ALARM restart" in m.baton("status").stdout
    install(old, next((tmp_path / "wheels").glob("baton-0.4.1-*.whl")))  # updated in place
    wait_for(lambda: running_version(m) == "0.4.1", 90, "the node on the update")
    said = m.status()["restart"]  # its supervisor restarted it on the update by itself
    assert (said["ok"], said["kind"], said["before"]) == (True, "updated", "0.4.0")
    m.python = old
    done = m.json("restart")  # nothing more to update: a plain restart, judged so
    assert (done["ok"], done["outcome"], done["before"]) == (True, "restarted", "0.4.1")


def test_a_restart_into_a_broken_version_fails_and_the_role_moves_to_a_good_machine(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    python = build(tmp_path, "0.5.0", (1, 1))
    broken = wheel(tmp_path, "0.5.1", (1, 1), BROKEN)
    mesh = make_mesh(2, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS, up=False)
    alpha, bravo = mesh.machines
    alpha.python = python
    mesh.pair_up()
    wait_for(lambda: bravo.status()["holder"] == alpha.status()["machine_id"], 60, "bravo")
    install(python, broken)
    failed = alpha.baton("restart", "--json", "--timeout", "60", check=False)
    assert failed.returncode == 1 and "restart_failed" in failed.stdout, failed.stdout
    assert "broken" in failed.stdout  # the supervisor's last error says why
    wait_for(lambda: bravo.status()["role"] == "awake", 60, "bravo to take over")


def running_version(m: Machine) -> str | None:
    with contextlib.suppress(Exception):  # restarting: no answer for a moment
        return str(m.status()["version"])
    return None


def test_the_supervisor_restarts_the_node_on_an_update_by_itself(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    python = build(tmp_path, "0.6.0", (1, 1))
    update = wheel(tmp_path, "0.6.1", (1, 1))
    [m] = make_mesh(1, up=False).machines
    m.python = python
    m.up()
    assert m.status()["restart"] is None  # nothing asked for this start
    install(python, update)  # `pip install -U` where the node runs
    wait_for(lambda: running_version(m) == "0.6.1", 90, "the node on the update")
    said = m.status()["restart"]
    assert (said["ok"], said["kind"], said["before"]) == (True, "updated", "0.6.0")


def test_a_mixed_mesh_under_load_hands_over_and_fails_over_exactly_once(
    make_mesh: Callable[..., Mesh], builds: dict[str, str], tmp_path: Path
) -> None:
    """This build and the next (protocols 1-2) at protocol 1, at the sink that forgives
    nothing: a wakeup onto the newer build, then a kill -9 of it, under load."""
    with ChatServer(tmp_path / "tg.sqlite", mode="telegram") as chat:
        mesh = start_mesh(make_mesh, chat, pythons={"bravo": builds["mid"]})
        alpha, bravo = mesh.machines
        with loading(chat, 200, until_done=True) as load:
            wait_for(lambda: chat_replies(chat) >= 20, 60, "replies before the handoff")
            woken = bravo.json("wakeup", timeout=180)
            assert woken["ok"] and bravo.status()["version"] == "0.2.0"
            wait_for(mesh.synced_holder, 90, "alpha in sync again", SYNC_POLL_S)
            epoch = bravo.status()["epoch"]
            bravo.signal_node(signal.SIGKILL)
            wait_for(lambda: failed_over(mesh, epoch), 90, "a holder of a newer epoch")
        posted = load["posted"]
        wait_for(lambda: answered(chat, set(posted)), 180, "every message answered")
        check_exactly_once(chat, posted, reported_ambiguous(mesh), mesh)
        assert alpha.status()["versions"]["mesh_protocol"] == 1


def test_a_rolling_update_under_load_moves_the_role_once_and_loses_nothing(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    """The README's "Upgrading a mesh", on three machines, each its own environment.
    The update is installed on all three: the standbys restart on it by themselves; the
    holder waits, holding, until a wakeup moves the role to an updated standby, then
    restarts on it too. At the sink that forgives nothing, under load: every message
    answered once."""
    first, update = wheel(tmp_path, "0.8.0", (1, 1)), wheel(tmp_path, "0.8.1", (1, 1))
    names = ("alpha", "bravo", "charlie")
    pythons = {name: environment(tmp_path / f"env-{name}") for name in names}
    for python in pythons.values():
        install(python, first)
    with ChatServer(tmp_path / "tg.sqlite", mode="telegram") as chat:
        mesh = start_mesh(make_mesh, chat, names=names, pythons=pythons)
        alpha, bravo, charlie = mesh.machines
        assert alpha.status()["role"] == "awake"
        with loading(chat, 200, until_done=True) as load:
            for python in pythons.values():
                install(python, update)
            for m in (bravo, charlie):
                wait_for(lambda m=m: running_version(m) == "0.8.1", 90, f"{m.name} updated")  # type: ignore[misc]
            assert alpha.status()["version"] == "0.8.0" and alpha.status()["role"] == "awake"
            wait_for(mesh.synced_holder, 90, "the standbys in sync again", SYNC_POLL_S)
            holder = alpha.status()["machine_id"]
            for m in (bravo, charlie):
                wait_for(lambda m=m: m.status()["holder"] == holder, 60, "the holder known")  # type: ignore[misc]
            plan = alpha.json("upgrade")  # the guide, on the holder: the role goes next
            assert plan["target"] == "0.8.1" and not plan["done"], plan
            [step] = plan["steps"]  # the role goes to the first updated standby in sync
            assert (step["machine"], step["action"]) == ("bravo", "wakeup"), plan
            assert bravo.json("wakeup", timeout=180)["ok"]
            wait_for(lambda: running_version(alpha) == "0.8.1", 90, "alpha on the update")
            wait_for(lambda: alpha.json("upgrade")["done"], 60, "the guide to say done")
        posted = load["posted"]
        wait_for(lambda: answered(chat, set(posted)), 180, "every message answered")
        check_exactly_once(chat, posted, reported_ambiguous(mesh), mesh)
        for m in mesh.machines:
            said = m.status()["restart"]
            assert (said["ok"], said["kind"]) == (True, "updated"), (m.name, said)
