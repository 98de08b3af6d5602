"""Component flags with real nodes (issue 21): under load, at the sink that forgives
nothing, each component turned off and on again mesh-wide from the holder: while
``state_sync`` is off the agent's state stays where it is written, and follows once it
is on; while ``secret_sync`` is off a secret stays on its machine, and travels once it
is on; the pool's flag is the pool's switch (its routes 503 while off). Only the holder
changes a flag; a core guarantee has none. Every message answered once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh
from tests.system.chat_kit import (
    answered,
    check_exactly_once,
    dump,
    holder,
    loading,
    reported_ambiguous,
    start_mesh,
)
from tests.waits import holds_for, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

VALUE = "sk-live-0123456789abcdef"


def flags(m: Machine) -> dict[str, bool]:
    return {c["name"]: c["enabled"] for c in m.json("features")["components"]}


def switch(m: Machine, name: str, on: bool) -> dict[str, bool]:
    said = m.json("features", "enable" if on else "disable", name)
    return {c["name"]: c["enabled"] for c in said["components"]}


def everywhere(mesh: Mesh, name: str, on: bool) -> None:
    for m in mesh.machines:
        wait_for(
            lambda m=m: (
                m.status()["features"].get(name, on) == on  # type: ignore[misc]
                and (name != "pool" or m.status()["pool"]["enabled"] == on)
            ),
            30,
            f"{m.name} to have {name} {'on' if on else 'off'}",
        )


def state_file(m: Machine) -> Path:
    return m.paths.state_dir / "flags-test.txt"


def secret_names(m: Machine) -> list[str]:
    return [row["name"] for row in m.json("secrets", "list")]


def pool_status(m: Machine) -> int:
    proc = m.baton("pool", "placement", "1/0", "--json", check=False)
    return 503 if '"pool_disabled"' in proc.stdout else proc.returncode


def test_each_component_off_and_on_under_load_at_the_sink_that_forgives_nothing(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    with ChatServer(tmp_path / "tg.sqlite", mode="telegram") as chat:
        mesh = start_mesh(make_mesh, chat, names=("alpha", "bravo"))
        awake = holder(mesh)
        assert awake is not None
        standby = next(m for m in mesh.machines if m is not awake)
        try:
            assert flags(standby) == {"pool": False, "state_sync": True, "secret_sync": True}
            with loading(chat, 300, until_done=True) as load:
                # the agent's state: off, a change stays on the holder; on, it follows
                assert switch(awake, "state_sync", False)["state_sync"] is False
                everywhere(mesh, "state_sync", False)
                state_file(awake).write_text("written while off\n")
                holds_for(
                    lambda: not state_file(standby).exists(),
                    3 * 2.0,  # three sync intervals of the default 2 s
                    "the state moved with state_sync off",
                )
                switch(awake, "state_sync", True)
                everywhere(mesh, "state_sync", True)
                wait_for(lambda: state_file(standby).exists(), 60, "the state to follow")

                # secrets: off, a secret stays where it is set; on, it travels
                switch(awake, "secret_sync", False)
                everywhere(mesh, "secret_sync", False)
                awake.baton("secrets", "set", "API_KEY", input=VALUE)
                holds_for(
                    lambda: "API_KEY" not in secret_names(standby),
                    6.0,
                    "a secret travelled with secret_sync off",
                )
                switch(awake, "secret_sync", True)
                wait_for(lambda: "API_KEY" in secret_names(standby), 60, "the secret to travel")

                # the pool: its flag is its switch
                switch(awake, "pool", True)
                everywhere(mesh, "pool", True)
                assert pool_status(standby) != 503
                switch(awake, "pool", False)
                everywhere(mesh, "pool", False)
                assert pool_status(standby) == 503 and pool_status(awake) == 503

                # only the holder, and no core guarantee
                refused = standby.baton("features", "disable", "state_sync", "--json", check=False)
                assert refused.returncode == 1
                assert json.loads(refused.stdout)["error"] == "not_holder"
                core = awake.baton("features", "disable", "lease", "--json", check=False)
                assert core.returncode == 1
                said = json.loads(core.stdout)
                assert said["error"] == "unknown_feature" and "core guarantee" in said["detail"]
            posted = load["posted"]
            wait_for(lambda: answered(chat, set(posted)), 180, "every message answered")
            check_exactly_once(chat, posted, reported_ambiguous(mesh), mesh)
            assert flags(standby) == {"pool": False, "state_sync": True, "secret_sync": True}
            human = standby.baton("features").stdout
            assert "state_sync   on" in human and "always on: lease" in human, human
        except BaseException:
            dump(mesh)
            raise


def test_without_a_lease_store_the_registrys_awake_machine_sets_the_flags(
    make_mesh: Callable[..., Mesh],
) -> None:
    """No lease store: the machine the registry names awake holds epoch 1 for the flags
    too (as for delivery); the pool is not available and says so."""
    mesh = make_mesh(2, up=False)
    mesh.pair_up()  # alpha founds the mesh (awake), bravo joins it (standby)
    awake, other = mesh.machines
    assert (awake.status()["role"], other.status()["role"]) == ("awake", "standby")
    assert switch(awake, "secret_sync", False)["secret_sync"] is False
    wait_for(lambda: other.status()["features"]["secret_sync"] is False, 30, "the other to take it")
    refused = other.baton("features", "enable", "secret_sync", "--json", check=False)
    assert refused.returncode == 1 and json.loads(refused.stdout)["error"] == "not_holder"
    listed = {c["name"]: c for c in other.json("features")["components"]}
    assert listed["pool"]["available"] is False and listed["secret_sync"]["enabled"] is False
