"""The agent's state directory follows the awake role (StateSync), with real nodes and a
real git remote (a bare repository on disk): a change on the holder reaches every
standby, a failover keeps every pushed change, a kill -9 mid-commit or mid-push loses
nothing, a standby's own change is queued to the holder (a conflict named), and a
commit no member made (unsigned, forged) is refused by every standby with its tree
unchanged."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
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


def forge(
    remote: Path, work: Path, *, key: Path | None = None, back: int = 0, force: bool = False
) -> str:
    """A commit made by hand on the remote's state ref, ``back`` commits below its tip,
    signed with ``key`` (an OpenSSH private key) or not, pushed there (forced if asked)."""
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(work)}
    signing = ["-c", "gpg.format=ssh", "-c", f"user.signingKey={key}", "-c", "commit.gpgSign=true"]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=m", "-c", "user.email=m@x", *(signing if key else []), *args],
            cwd=work, check=True, capture_output=True, text=True, timeout=30, env=env,
        ).stdout  # fmt: skip

    work.mkdir()
    git("init", "-q")
    git("fetch", "-q", f"file://{remote}", "refs/baton/state:refs/base")
    git("checkout", "-q", f"refs/base~{back}")
    (work / "notes.txt").write_text("forged\n")
    git("add", "-A")
    git("commit", "-qm", "forged\n\nBaton-Epoch: 1\n")
    git("push", "-q", *(["--force"] if force else []), f"file://{remote}", "HEAD:refs/baton/state")
    return git("rev-parse", "HEAD").strip()


def refused_everywhere(standbys: list[Machine], forged: str, reason: str) -> None:
    for m in standbys:
        wait_for(
            lambda m=m: (status(m)["state"]["refused"] or {}).get("commit") == forged,
            60,
            f"{m.name} to refuse the forged commit",
        )
        assert status(m)["state"]["refused"]["reason"].startswith(reason)
        assert status(m)["counters"]["state.untrusted"] >= 1
        assert has_note(m, "honest\n")  # the tree stays at the last verified commit


def test_unsigned_foreign_rewritten_and_removed_machines_commits_are_refused_everywhere(
    mesh: Mesh, tmp_path: Path
) -> None:
    holder = holder_of(mesh)
    others = [m for m in mesh.machines if m is not holder]
    note(holder, "honest\n")
    for m in others:
        wait_for(lambda m=m: has_note(m, "honest\n"), 60, f"{m.name} to take the change")
    remote = mesh.root / "lease.git"
    honest = subprocess.run(
        ["git", f"--git-dir={remote}", "rev-parse", "refs/baton/state"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip

    def restore() -> None:  # the remote back to the honest tip, as its owner would
        subprocess.run(
            ["git", f"--git-dir={remote}", "update-ref", "refs/baton/state", honest],
            timeout=30, check=True,
        )  # fmt: skip

    foreign = tmp_path / "foreign.key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(foreign)], timeout=30, check=True
    )
    cases = [
        ("unsigned", {}, "not signed"),
        ("foreign", {"key": foreign}, "signed by a key that is not a member's"),
        ("rewrite", {"back": 1, "force": True}, "rewrites history"),
    ]
    for name, how, reason in cases:
        forged = forge(remote, tmp_path / name, **how)  # type: ignore[arg-type]
        refused_everywhere(others, forged, reason)
        restore()
    victim, standby = others
    holder.json("machines", "remove", victim.name)

    def tip_message() -> str:
        return subprocess.run(
            ["git", f"--git-dir={remote}", "log", "-1", "--format=%s", "refs/baton/state"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip

    wait_for(lambda: tip_message() == "machines removed", 60, "the holder's removal mark")
    forged = forge(remote, tmp_path / "removed", key=victim.paths.state_signing_key)
    refused_everywhere([standby], forged, "signed by")  # git's window check, or ours


# --- kill -9 mid-step, and the standbys' queued changes -----------------------------

SHIM_GIT = """#!/bin/bash
# git, but a state push stalls when the machine's home has a stall-push file
case " $* " in *":refs/baton/state "*)
  if [ -e "$PWD/stall-push" ]; then
    rm -f "$PWD/stall-push"; echo $$ > "$PWD/stalled.tmp"; mv "$PWD/stalled.tmp" "$PWD/stalled"
    sleep 300
  fi;;
esac
exec {git} "$@"
"""
SHIM_SSH_KEYGEN = """#!/bin/bash
# ssh-keygen, but a commit's signing stalls (git holds its index lock then) when the
# home of the key (-f HOME/machine/KEY) has a stall-commit file
if [ "$1 $2" = "-Y sign" ]; then
  key=; prev=; for a in "$@"; do [ "$prev" = "-f" ] && key="$a"; prev="$a"; done
  home="$(dirname "$(dirname "$key")")"
  if [ -e "$home/stall-commit" ]; then
    rm -f "$home/stall-commit"
    echo $$ > "$home/stalled.tmp"; mv "$home/stalled.tmp" "$home/stalled"
    sleep 300
  fi
fi
exec {ssh_keygen} "$@"
"""


@pytest.fixture
def stalling_mesh(make_mesh: Callable[..., Mesh], tmp_path: Path) -> Iterator[Mesh]:
    """A mesh whose git and ssh-keygen stall a state push or commit on demand; whatever
    stalled is ended at teardown, test passed or not."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, text in (("git", SHIM_GIT), ("ssh-keygen", SHIM_SSH_KEYGEN)):
        real = shutil.which(name)
        assert real is not None, f"{name} is not installed"
        (shims / name).write_text(text.format(git=real, ssh_keygen=real))
        (shims / name).chmod(0o755)
    env = {**SYNC, "PATH": f"{shims}:{os.environ['PATH']}"}
    mesh = make_mesh(3, names=["alpha", "bravo", "charlie"], lease_ttl_ms=TTL_MS, env=env)
    try:
        yield mesh
    finally:
        for m in mesh.machines:
            end_stalled(m)


def end_stalled(m: Machine) -> None:
    """Kill -9 the stalled git's whole process group (git runs in a group of its own)."""
    marker = m.home / "stalled"
    if marker.exists():
        pid = int(marker.read_text())
        marker.unlink()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


@pytest.mark.parametrize("step", ["commit", "push"])
def test_a_kill_9_mid_commit_or_mid_push_loses_no_change(stalling_mesh: Mesh, step: str) -> None:
    """The holder dies whole (node, supervisor and the git in flight) while it commits
    or pushes a change. Its successor starts from the last pushed state; when the old
    holder comes back, a standby, its change is queued to the successor and reaches
    every machine."""
    mesh = stalling_mesh
    holder = holder_of(mesh)
    others = [m for m in mesh.machines if m is not holder]
    note(holder, "first\n")
    for m in others:
        wait_for(lambda m=m: has_note(m, "first\n"), 60, f"{m.name} to take the change")
    (holder.home / f"stall-{step}").touch()
    note(holder, "second\n")
    wait_for(lambda: (holder.home / "stalled").exists(), 60, f"the holder's {step} to stall")
    holder.send_signal(signal.SIGKILL)
    end_stalled(holder)
    successor = wait_for(
        lambda: next((m for m in others if status(m)["role"] == "awake"), None), 60, "a takeover"
    )
    assert has_note(successor, "first\n")  # the last pushed state
    holder.stop()
    holder.up()
    for m in mesh.machines:
        wait_for(
            lambda m=m: has_note(m, "second\n"), 120, f"the change made at the kill on {m.name}"
        )
    assert status(successor)["counters"].get("state.queue_taken", 0) >= 1


def test_a_standbys_change_is_taken_by_the_holder_and_a_conflict_named(mesh: Mesh) -> None:
    holder = holder_of(mesh)
    standby, other = [m for m in mesh.machines if m is not holder]
    note(holder, "base\n")
    for m in (standby, other):
        wait_for(lambda m=m: has_note(m, "base\n"), 60, f"{m.name} to take the change")
    (standby.home / "state" / "by-hand.txt").write_text("made on a standby\n")
    for m in (holder, other):
        path = m.home / "state" / "by-hand.txt"
        wait_for(
            lambda path=path: path.exists() and path.read_text() == "made on a standby\n",
            60,
            f"the standby's change to reach {m.name}",
        )
    assert status(holder)["counters"]["state.queue_taken"] >= 1
    note(standby, "the standby's\n")  # both change one file at once: a conflict
    note(holder, "the holder's\n")
    for m in mesh.machines:  # the holder's side wins everywhere
        wait_for(lambda m=m: has_note(m, "the holder's\n"), 60, f"{m.name} to settle")

    def named() -> bool:  # by the holder, or by the standby if the holder pushed first
        return any(
            "notes.txt" in status(m)["state"]["conflicts"]
            and status(m)["counters"].get("state.conflicts", 0) >= 1
            for m in (holder, standby)
        )

    wait_for(named, 60, "the conflict to be named")

    def history() -> str:
        return subprocess.run(
            ["git", f"--git-dir={mesh.root / 'lease.git'}", "log", "-p", "refs/baton/state"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip

    # the losing side reaches the remote's history: at once when the holder named the
    # conflict, with the standby's queue (taken at the holder's next tick) when the
    # standby did
    wait_for(lambda: "+the standby's" in history(), 60, "the standby's side in the history")
