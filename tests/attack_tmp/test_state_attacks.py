"""Attack tests (temporary): StateRepo under odd trees, crashes, clock skew, big queues."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from baton.core.errors import BatonError, StateSyncError, UntrustedCommit
from baton.stores import state_git
from baton.stores.state_repo import StateRepo
from tests.unit.test_state_repo import HIGH, NOW, Mesh, holder_commits, queue_change

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    return Mesh(tmp_path)


@pytest.fixture
def pair(mesh: Mesh) -> tuple[StateRepo, StateRepo]:
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    return alpha, bravo


def show(repo: StateRepo, spec: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo.git_dir}", "show", spec],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip


def test_an_empty_git_repository_in_the_tree_does_not_stop_every_commit(mesh: Mesh) -> None:
    alpha = mesh.repo("alpha")
    holder_commits(alpha, "one\n")
    subprocess.run(["git", "init", "-q", str(alpha.tree / "scratch")], check=True, timeout=30)
    (alpha.tree / "notes.txt").write_text("two\n")
    made = alpha.commit(epoch=1, now=NOW + 1, message="turn")  # StateSyncError: add -A fails
    assert made is not None


def test_a_queue_over_the_cap_is_taken_some_day(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_git, "MAX_NEW_COMMITS", 2)  # 1000 in production
    alpha, bravo = pair
    bravo_id = mesh.ids["bravo"].machine_id
    for n in range(3):  # a standby offline a while, a tool writing its state
        (bravo.tree / "bravo.txt").write_text(f"{n}\n")
        bravo.commit(epoch=None, now=NOW + n, message="queued")
    bravo.send_queue()
    attempts = []
    for n in range(3):  # the remote moves, bravo merges it in and sends again
        holder_commits(alpha, f"alpha {n}\n", NOW + 10 + n)
        bravo.pull(mesh.windows(), HIGH, now=NOW + 20 + n)
        sha = bravo.send_queue() or ""
        try:
            alpha.take_queued(bravo_id, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 30 + n)
            attempts.append("taken")
        except UntrustedCommit as exc:
            attempts.append(exc.reason)
    assert "taken" in attempts, f"bravo's queue is never taken: {attempts}"


def test_a_holder_with_a_late_push_over_the_cap_pushes_again_some_day(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_git, "MAX_NEW_COMMITS", 2)
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    (bravo.tree / "bravo.txt").write_text("bravo's\n")
    assert bravo.commit(epoch=2, now=NOW + 5, message="holder at epoch 2") is not None
    for n in range(3):  # the old holder's commits land before bravo's first push
        holder_commits(alpha, f"late {n}\n", NOW + 1 + n)
    assert bravo.push() is False
    outcomes = []
    for n in range(3):  # what StateSyncActor does each tick: absorb, then push
        try:
            bravo.absorb(mesh.windows(), HIGH, epoch=2, now=NOW + 10 + n)
            outcomes.append("pushed" if bravo.push() else "refused")
        except BatonError as exc:
            outcomes.append(exc.detail)
    assert "pushed" in outcomes, f"the holder never pushes again: {outcomes}"


def test_a_standby_whose_clock_lagged_at_its_join_is_not_refused_forever(
    mesh: Mesh,
) -> None:
    # the approver's clock dated bravo's join NOW+100; bravo's own clock says NOW+50
    mesh.entries["bravo"] = replace(mesh.entries["bravo"], added_at=NOW + 100)
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW + 50)
    bravo_id = mesh.ids["bravo"].machine_id
    first = queue_change(bravo, "bravo.txt", "early\n", now=NOW + 50)
    with pytest.raises(UntrustedCommit, match="before it joined|not a member.s at the commit.s time"):
        alpha.take_queued(bravo_id, first, mesh.windows(), HIGH, epoch=1, now=NOW + 60)
    # much later, clocks agree; bravo changes something else
    later = queue_change(bravo, "bravo2.txt", "later\n", now=NOW + 500)
    try:
        alpha.take_queued(bravo_id, later, mesh.windows(), HIGH, epoch=1, now=NOW + 510)
    except UntrustedCommit as exc:
        pytest.fail(f"every later change of bravo is refused too: {exc.detail}")


def test_a_crash_between_git_commit_and_the_verified_ref_loses_no_change(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, bravo = pair
    (bravo.tree / "bravo.txt").write_text("by hand on bravo\n")

    def killed(self: StateRepo) -> str:  # git commit ran; update-ref never did
        raise StateSyncError("killed")

    with monkeypatch.context() as m:
        m.setattr(StateRepo, "_made", killed)
        with pytest.raises(StateSyncError):
            bravo.commit(epoch=None, now=NOW + 1, message="queued")
    bravo = mesh.repo("bravo")  # the node starts again
    assert bravo.commit(epoch=None, now=NOW + 2, message="queued") is None  # tree is clean
    holder_commits(alpha, "two\n", NOW + 3)
    bravo.pull(mesh.windows(), HIGH, now=NOW + 4)
    assert (bravo.tree / "bravo.txt").exists(), "bravo's committed change was dropped by pull"


def test_a_crash_mid_merge_commits_no_conflict_markers(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, bravo = pair
    sha = queue_change(bravo, "notes.txt", "bravo's notes\n")
    (alpha.tree / "notes.txt").write_text("alpha's notes\n")
    alpha.commit(epoch=1, now=NOW + 11, message="turn")
    real = state_git.StateGit._git

    def dies_at_abort(self: state_git.StateGit, *args: str, **kw: object):  # type: ignore[no-untyped-def]
        if args[:2] == ("merge", "--abort"):
            raise KeyboardInterrupt("kill -9 here")
        return real(self, *args, **kw)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(state_git.StateGit, "_git", dies_at_abort)
        with pytest.raises(KeyboardInterrupt):
            alpha.take_queued(
                mesh.ids["bravo"].machine_id, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20
            )
    alpha = mesh.repo("alpha")  # the node starts again; its first tick commits
    made = alpha.commit(epoch=1, now=NOW + 30, message="agent state")
    text = show(alpha, f"{made}:notes.txt") if made else (alpha.tree / "notes.txt").read_text()
    assert "<<<<<<<" not in text, f"conflict markers committed as state: {text!r}"


def test_a_file_remotes_config_runs_no_command_on_a_push(mesh: Mesh, tmp_path: Path) -> None:
    other = tmp_path / "other.git"
    subprocess.run(["git", "init", "-q", "--bare", str(other)], check=True, timeout=30)
    (mesh.remote / "objects" / "info" / "alternates").write_text(f"{other}/objects\n")
    marker = tmp_path / "ran-on-the-pusher"
    subprocess.run(
        ["git", f"--git-dir={mesh.remote}", "config", "core.alternateRefsCommand",
         f'sh -c "touch {marker}; true"'],
        check=True, timeout=30,
    )  # fmt: skip
    holder_commits(mesh.repo("alpha"), "one\n")
    assert not marker.exists(), "the remote's core.alternateRefsCommand ran on this machine"


def test_a_file_turned_directory_on_a_standby_keeps_the_holders_file(
    mesh: Mesh,
) -> None:
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    (alpha.tree / "d").write_text("file d\n")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    (bravo.tree / "d").unlink()
    (bravo.tree / "d").mkdir()
    (bravo.tree / "d" / "inner").write_text("inner\n")
    sha = queue_change(bravo, "b.txt", "b\n")
    (alpha.tree / "d").write_text("file d changed by the holder\n")
    alpha.commit(epoch=1, now=NOW + 11, message="turn")
    conflicts = alpha.take_queued(
        mesh.ids["bravo"].machine_id, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20
    )
    assert conflicts == ["d"], f"conflicts named: {conflicts}"
    assert (alpha.tree / "d").is_file(), "the holder's changed file d is gone from its tree"
