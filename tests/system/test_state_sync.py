"""The agent's state directory follows the awake role (StateSync), with real nodes and a
real git remote (a bare repository on disk): a change on the holder reaches every
standby, a failover keeps every pushed change, and a commit no member made (unsigned,
forged) is refused by every standby with its tree unchanged."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from baton.demo.devmesh import Machine, Mesh
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

TTL_MS = 3000
SYNC = {"BATON_STATE_SYNC_MS": "300"}


def status(m: Machine) -> dict[str, Any]:
    return m.status()


def holder_of(mesh: Mesh) -> Machine:
    def one() -> Machine | None:
        awake = [m for m in mesh.machines if status(m)["role"] == "awake"]
        return awake[0] if len(awake) == 1 else None

    return wait_for(one, 60, "one holder")


def note(m: Machine, text: str) -> None:
    (m.home / "state" / "notes.txt").write_text(text)


def has_note(m: Machine, text: str) -> bool:
    path = m.home / "state" / "notes.txt"
    return path.exists() and path.read_text() == text


@pytest.fixture
def mesh(make_mesh: Callable[..., Mesh]) -> Mesh:
    return make_mesh(3, names=["alpha", "bravo", "charlie"], lease_ttl_ms=TTL_MS, env=SYNC)


def test_a_change_on_the_holder_reaches_every_standby_and_survives_a_failover(mesh: Mesh) -> None:
    holder = holder_of(mesh)
    others = [m for m in mesh.machines if m is not holder]
    note(holder, "first\n")
    for m in others:
        wait_for(lambda m=m: has_note(m, "first\n"), 60, f"{m.name} to take the change")

    def one_head() -> bool:  # status shows a pull once it is done: after the tree moved
        heads = {status(m)["state"]["head"] for m in mesh.machines}
        return len(heads) == 1 and None not in heads

    wait_for(one_head, 30, "every machine's status to show the same verified commit")
    assert status(holder)["counters"].get("state.pushed", 0) >= 1

    holder.send_signal(signal.SIGKILL)
    successor = wait_for(
        lambda: next((m for m in others if status(m)["role"] == "awake"), None), 60, "a takeover"
    )
    assert has_note(successor, "first\n")  # the new holder starts from the pushed state
    note(successor, "second\n")
    [last] = [m for m in others if m is not successor]
    wait_for(lambda: has_note(last, "second\n"), 60, "the change of the new holder")
    holder.stop()
    holder.up()  # the old holder comes back a standby, and catches up
    wait_for(lambda: has_note(holder, "second\n"), 60, "the old holder to catch up")


def forge_unsigned(remote: Path, work: Path) -> str:
    """An unsigned commit on top of the remote's state ref, pushed there by hand."""
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(work)}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=m", "-c", "user.email=m@x", *args],
            cwd=work, check=True, capture_output=True, text=True, timeout=30, env=env,
        ).stdout  # fmt: skip

    work.mkdir()
    git("init", "-q")
    git("fetch", "-q", f"file://{remote}", "refs/baton/state:refs/base")
    git("checkout", "-q", "refs/base")
    (work / "notes.txt").write_text("forged\n")
    git("commit", "-qam", "forged\n\nBaton-Epoch: 999\n")
    git("push", "-q", f"file://{remote}", "HEAD:refs/baton/state")
    return git("rev-parse", "HEAD").strip()


def test_an_unsigned_commit_on_the_remote_is_refused_by_every_standby(
    mesh: Mesh, tmp_path: Path
) -> None:
    holder = holder_of(mesh)
    others = [m for m in mesh.machines if m is not holder]
    note(holder, "honest\n")
    for m in others:
        wait_for(lambda m=m: has_note(m, "honest\n"), 60, f"{m.name} to take the change")
    forged = forge_unsigned(mesh.root / "lease.git", tmp_path / "forger")
    for m in others:
        wait_for(
            lambda m=m: (status(m)["state"]["refused"] or {}).get("commit") == forged,
            60,
            f"{m.name} to refuse the forged commit",
        )
        assert status(m)["state"]["refused"]["reason"] == "not signed"
        assert status(m)["counters"]["state.untrusted"] >= 1
        assert has_note(m, "honest\n")  # the tree stays at the last verified commit
