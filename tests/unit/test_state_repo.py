"""StateRepo with real git, real SSH signatures and a real remote (a bare repository on
disk): the holder's signed commits reach a standby's tree, and every commit a member
did not make in its window (unsigned, foreign, by a removed machine after its removal,
a rewrite, out of order) is refused with the tree and the verified commit unchanged."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import git
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from baton.core.errors import CommitAhead, StateSyncError, UntrustedCommit
from baton.core.registry import MachineEntry, Status, entry_from_card
from baton.core.state_trust import Pulled, SignerWindow, signer_windows, ssh_public_key
from baton.stores import state_git, state_repo
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity, create_home
from baton.stores.state_repo import REF, StateRepo

NOW = 1_800_000_000.0
HIGH = 1000  # the highest lease epoch known


def member(identity: MachineIdentity, added_at: float = NOW - 1000) -> MachineEntry:
    card = {**identity.public.to_dict(), "wire": "tcp://127.0.0.1:1", "http": "http://127.0.0.1:2"}
    return entry_from_card(card, added_at)


class Mesh:
    """Two machines' homes and the remote they share."""

    def __init__(self, root: Path) -> None:
        self.remote = root / "state-remote.git"
        git.Repo.init(self.remote, bare=True).close()
        self.url = f"file://{self.remote}"
        self.ids = {n: create_home(root / n, n) for n in ("alpha", "bravo", "charlie")}
        self.entries = {n: member(i) for n, i in self.ids.items()}
        self.root = root

    def repo(self, name: str) -> StateRepo:
        return StateRepo(HomePaths(self.root / name), self.ids[name], self.url)

    def windows(self) -> dict[str, SignerWindow]:
        return signer_windows(self.entries.values())

    def remote_tip(self) -> str:
        return git.Repo(self.remote).git.rev_parse(REF)


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    return Mesh(tmp_path)


def forge(
    mesh: Mesh,
    tmp_path: Path,
    *,
    key: Ed25519PrivateKey | None,
    date: float,
    epoch: str = "1",
    base: str | None = None,
    force: bool = False,
    message: bytes | None = None,
) -> str:
    """A commit on the remote's ref made by hand: signed with ``key`` (None: unsigned),
    dated ``date``, on ``base`` (default: the remote's tip); pushed, forced if asked."""
    work = tmp_path / f"forge-{date}-{epoch}"
    subprocess.run(["git", "init", "-q", str(work)], check=True, timeout=30)
    settings = ["-c", "user.name=mallory", "-c", "user.email=m@x", "-c", "core.hooksPath=/dev/null"]
    if key is not None:
        key_file = work / ".." / f"key-{date}"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        settings += [
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingKey={key_file}",
            "-c",
            "commit.gpgSign=true",
        ]

    def run(*args: str, **env: str) -> str:
        return subprocess.run(
            ["git", *settings, *args],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin", **env},
        ).stdout

    run("fetch", "-q", mesh.url, f"{REF}:refs/base")
    run("checkout", "-q", base or "refs/base")
    (work / "forged.txt").write_text(f"forged at {date}\n")
    run("add", "-A")
    stamp = f"{int(date)} +0000"
    message_file = work.parent / f"message-{date}-{epoch}"
    message_file.write_bytes(message or f"forged\n\nBaton-Epoch: {epoch}\n".encode())
    run("commit", "-q", "-F", str(message_file), GIT_COMMITTER_DATE=stamp, GIT_AUTHOR_DATE=stamp)
    sha = run("rev-parse", "HEAD").strip()
    run("push", "-q", *(["--force"] if force else []), mesh.url, f"{sha}:{REF}")
    return sha


def seed_key(identity: MachineIdentity) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(identity.signing_key))


def holder_commits(repo: StateRepo, text: str, now: float = NOW, epoch: int = 1) -> str:
    (repo.tree / "notes.txt").write_text(text)
    made = repo.commit(epoch=epoch, now=now, message="turn")
    assert made is not None and repo.push()
    return made


def test_a_change_on_the_holder_reaches_a_standby_signed_and_verified(mesh: Mesh) -> None:
    holder, standby = mesh.repo("alpha"), mesh.repo("bravo")
    first = holder_commits(holder, "one\n")
    assert standby.pull(mesh.windows(), HIGH, now=NOW) == Pulled(first, 1)
    second = holder_commits(holder, "two\n", NOW + 5, epoch=2)
    assert standby.pull(mesh.windows(), HIGH, now=NOW) == Pulled(second, 1)
    assert (standby.tree / "notes.txt").read_text() == "two\n"
    assert standby.head() == second == mesh.remote_tip()
    assert standby.pull(mesh.windows(), HIGH, now=NOW) == Pulled(second, 0)  # nothing new


def test_nothing_changed_is_no_commit(mesh: Mesh) -> None:
    holder = mesh.repo("alpha")
    assert holder.commit(epoch=1, now=NOW, message="turn") is None
    holder_commits(holder, "x\n")
    assert holder.commit(epoch=1, now=NOW, message="turn") is None


def test_commits_are_dated_no_earlier_than_their_parent(mesh: Mesh) -> None:
    """A holder whose clock is behind the last one's still makes commits in order."""
    holder, standby = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(holder, "one\n", NOW + 100)
    standby.pull(mesh.windows(), HIGH, now=NOW)
    (standby.tree / "notes.txt").write_text("from a slow clock\n")
    made = standby.commit(epoch=2, now=NOW, message="turn")
    assert made is not None and standby.push()
    assert mesh.repo("charlie").pull(mesh.windows(), HIGH, now=NOW).head == made


def test_the_signing_key_file_is_the_machines_key_and_private(mesh: Mesh, tmp_path: Path) -> None:
    mesh.repo("alpha")
    path = HomePaths(tmp_path / "alpha").state_signing_key
    key = serialization.load_ssh_private_key(path.read_bytes(), None)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert public.decode() == ssh_public_key(mesh.ids["alpha"].public.signing_public)
    assert path.stat().st_mode & 0o777 == 0o600


def refused(mesh: Mesh, standby: StateRepo, words: str) -> None:
    before, text = standby.head(), (standby.tree / "notes.txt").read_text()
    with pytest.raises(UntrustedCommit, match=words):
        standby.pull(mesh.windows(), HIGH, now=NOW)
    assert standby.head() == before and (standby.tree / "notes.txt").read_text() == text
    assert not (standby.tree / "forged.txt").exists()


@pytest.fixture
def synced(mesh: Mesh) -> StateRepo:
    holder, standby = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(holder, "one\n")
    standby.pull(mesh.windows(), HIGH, now=NOW)
    return standby


def test_an_unsigned_commit_is_refused(mesh: Mesh, synced: StateRepo, tmp_path: Path) -> None:
    forge(mesh, tmp_path, key=None, date=NOW + 10)
    refused(mesh, synced, "not signed")


def test_a_commit_signed_by_a_key_no_member_has_is_refused(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    forge(mesh, tmp_path, key=Ed25519PrivateKey.generate(), date=NOW + 10)
    refused(mesh, synced, "not a member's")


def test_a_removed_machines_commit_after_its_removal_is_refused(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    mesh.entries["charlie"] = replace(
        mesh.entries["charlie"], status=Status.REVOKED, revoked_at=NOW + 50
    )
    forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW + 60)
    refused(mesh, synced, "not a member's")  # git's own window check, then ours


def test_a_removed_machines_commit_from_before_its_removal_is_taken(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    mesh.entries["charlie"] = replace(
        mesh.entries["charlie"], status=Status.REVOKED, revoked_at=NOW + 50
    )
    sha = forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW + 40)
    assert synced.pull(mesh.windows(), HIGH, now=NOW) == Pulled(sha, 1)


def test_a_members_commit_dated_before_its_parent_is_refused(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW - 10)
    refused(mesh, synced, "dated before its parent")


def test_a_commit_of_an_older_epoch_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    holder, standby = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(holder, "one\n", epoch=5)
    standby.pull(mesh.windows(), HIGH, now=NOW)
    forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW + 10, epoch="4")
    refused(mesh, standby, "epoch 4 below its parent's 5")


def test_a_rewritten_history_is_refused_even_when_well_signed(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    holder = mesh.repo("alpha")
    root = holder.head()
    holder_commits(holder, "two\n", NOW + 5)
    synced.pull(mesh.windows(), HIGH, now=NOW)
    forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW + 10, base=root, force=True)
    refused(mesh, synced, "rewrites history")


def test_a_bad_commit_anywhere_in_the_new_ones_refuses_them_all(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    forge(mesh, tmp_path, key=None, date=NOW + 10)
    forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW + 20, epoch="2")
    refused(mesh, synced, "not signed")


def test_a_holder_never_forces_its_push(mesh: Mesh, tmp_path: Path) -> None:
    holder, other = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(holder, "one\n")
    (other.tree / "notes.txt").write_text("elsewhere\n")
    assert other.commit(epoch=1, now=NOW, message="turn") is not None
    tip = mesh.remote_tip()
    assert other.push() is False
    assert mesh.remote_tip() == tip


def test_an_unreachable_remote_is_a_state_sync_error(mesh: Mesh, tmp_path: Path) -> None:
    repo = StateRepo(
        HomePaths(tmp_path / "alpha"), mesh.ids["alpha"], f"file://{tmp_path}/nowhere.git"
    )
    with pytest.raises(StateSyncError, match="cannot read"):
        repo.pull(mesh.windows(), HIGH, now=NOW)
    (repo.tree / "notes.txt").write_text("x\n")
    repo.commit(epoch=1, now=NOW, message="turn")
    with pytest.raises(StateSyncError, match="cannot push"):
        repo.push()


def test_the_agent_cannot_reach_the_repository_from_its_tree(mesh: Mesh) -> None:
    """The git directory lives outside state/: a .git the agent plants there (with a
    hook that would run) is only a file in the tree to baton's git."""
    holder = mesh.repo("alpha")
    planted = holder.tree / ".git"
    (planted / "hooks").mkdir(parents=True)
    hook = planted / "hooks" / "pre-commit"
    hook.write_text('#!/bin/sh\ntouch "$0.ran"\n')
    hook.chmod(0o755)
    holder_commits(holder, "x\n")
    assert not (planted / "hooks" / "pre-commit.ran").exists()
    assert holder.git_dir != holder.tree / ".git"


# --- what an attacking review found (each failed before its fix) -----------------------


def test_a_commit_message_that_is_not_utf8_is_refused_not_a_crash(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    member = seed_key(mesh.ids["charlie"])
    forge(mesh, tmp_path, key=member, date=NOW + 10, message=b"x\n\nBaton-Epoch: 1\xff\n")
    refused(mesh, synced, "no single Baton-Epoch")


def show(repo: StateRepo, what: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo.git_dir}", "show", what],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip


def test_a_push_lost_in_a_failover_is_queued_to_the_next_holder_and_kept_in_history(
    mesh: Mesh,
) -> None:
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    (alpha.tree / "notes.txt").write_text("alpha's, never pushed\n")
    (alpha.tree / "alpha.txt").write_text("alpha's own\n")
    lost = alpha.commit(epoch=1, now=NOW + 1, message="turn")  # its push never happens
    holder_commits(bravo, "bravo's\n", NOW + 2, epoch=2)  # bravo took over meanwhile
    pulled = alpha.pull(mesh.windows(), HIGH, now=NOW + 3)
    assert pulled.taken == 1 and pulled.conflicts == ("notes.txt",)
    assert (alpha.tree / "notes.txt").read_text() == "bravo's\n"  # the holder's side
    assert (alpha.tree / "alpha.txt").read_text() == "alpha's own\n"  # no conflict there
    assert alpha.send_queue() == alpha.head()
    queued = bravo.queued(mesh.windows())
    assert queued == {mesh.ids["alpha"].machine_id: alpha.head()}
    [(who, sha)] = queued.items()
    assert bravo.take_queued(who, sha, mesh.windows(), HIGH, epoch=2, now=NOW + 4) == []
    assert bravo.push() is True
    charlie = mesh.repo("charlie")
    assert charlie.pull(mesh.windows(), HIGH, now=NOW + 5).head == mesh.remote_tip()
    assert (charlie.tree / "alpha.txt").read_text() == "alpha's own\n"
    assert show(charlie, f"{lost}:notes.txt") == "alpha's, never pushed"  # in the history
    assert alpha.pull(mesh.windows(), HIGH, now=NOW + 6).head == mesh.remote_tip()
    assert alpha.send_queue() is None  # taken: nothing more to send


def test_the_remotes_hooks_never_run_on_a_push(mesh: Mesh) -> None:
    ran = mesh.root / "hook-ran"
    for name in ("pre-receive", "update", "post-receive"):
        hook = mesh.remote / "hooks" / name
        hook.write_text(f"#!/bin/sh\ntouch {ran}\n")
        hook.chmod(0o755)
    holder_commits(mesh.repo("alpha"), "one\n")
    assert not ran.exists()


def test_the_users_gitconfig_changes_nothing(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitconfig"
    config.write_text("[log]\n\tshowSignature = true\n[core]\n\tautocrlf = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    holder, standby = mesh.repo("alpha"), mesh.repo("bravo")
    (holder.tree / "crlf.txt").write_bytes(b"a\r\nb\n")
    holder_commits(holder, "one\n")
    assert standby.pull(mesh.windows(), HIGH, now=NOW).taken == 1
    assert (standby.tree / "crlf.txt").read_bytes() == b"a\r\nb\n"


def test_a_flood_of_commits_is_taken_a_bounded_part_at_a_time(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_git, "MAX_NEW_COMMITS", 3)
    monkeypatch.setattr(state_git, "BATCH", 2)
    holder, standby = mesh.repo("alpha"), mesh.repo("bravo")
    for i in range(5):
        holder_commits(holder, f"{i}\n", NOW + i)
    assert standby.pull(mesh.windows(), HIGH, now=NOW).taken == 3
    assert (standby.tree / "notes.txt").read_text() == "2\n"
    assert standby.pull(mesh.windows(), HIGH, now=NOW) == Pulled(mesh.remote_tip(), 2)


def test_a_git_repository_in_the_tree_is_named_not_synced(mesh: Mesh) -> None:
    holder = mesh.repo("alpha")
    inner = holder.tree / "notes-repo"
    subprocess.run(["git", "init", "-q", str(inner)], check=True, timeout=30)
    (inner / "important.txt").write_text("x\n")
    who = ["-c", "user.name=a", "-c", "user.email=a@b"]
    subprocess.run(
        ["git", *who, "commit", "-q", "--allow-empty", "-m", "x"], cwd=inner, check=True, timeout=30
    )
    holder_commits(holder, "one\n")
    assert holder.nested == ["notes-repo"]


def test_a_remote_ref_that_names_no_commit_is_refused(mesh: Mesh, synced: StateRepo) -> None:
    blob = subprocess.run(
        ["git", f"--git-dir={mesh.remote}", "hash-object", "-w", "--stdin"],
        input="not a commit", capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    git.Repo(mesh.remote).git.update_ref(REF, blob)
    with pytest.raises(UntrustedCommit, match="names no commit"):
        synced.pull(mesh.windows(), HIGH, now=NOW)


def test_a_commit_of_an_epoch_not_heard_of_waits(mesh: Mesh) -> None:
    holder, standby = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(holder, "one\n", epoch=5)
    with pytest.raises(CommitAhead):
        standby.pull(mesh.windows(), 4, now=NOW)
    assert standby.head() is None and not (standby.tree / "notes.txt").exists()
    assert standby.pull(mesh.windows(), 5, now=NOW).taken == 1


# --- a late push of the holder before: merged, never forced -------------------------


@pytest.fixture
def late_push(mesh: Mesh) -> tuple[StateRepo, StateRepo]:
    """alpha held epoch 1; bravo holds epoch 2, with a commit of its own not pushed yet,
    when alpha's last push (late) lands on the remote."""
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    (bravo.tree / "bravo.txt").write_text("bravo's own\n")
    assert bravo.commit(epoch=2, now=NOW + 2, message="turn") is not None
    (alpha.tree / "alpha.txt").write_text("alpha's late\n")
    holder_commits(alpha, "alpha's late notes\n", NOW + 1, epoch=1)
    assert bravo.push() is False  # the remote moved: never forced
    return alpha, bravo


def test_a_late_push_of_the_holder_before_is_merged_in(
    mesh: Mesh, late_push: tuple[StateRepo, StateRepo]
) -> None:
    _, bravo = late_push
    late = mesh.remote_tip()
    assert bravo.absorb(mesh.windows(), HIGH, epoch=2, now=NOW + 3) == []
    assert bravo.push() is True
    charlie = mesh.repo("charlie")
    assert charlie.pull(mesh.windows(), HIGH, now=NOW).head == bravo.head() == mesh.remote_tip()
    for name, text in (("bravo.txt", "bravo's own\n"), ("alpha.txt", "alpha's late\n")):
        assert (charlie.tree / name).read_text() == text  # both sides, nothing lost
    assert bravo._descends(late, bravo.head() or "")


def test_a_conflict_keeps_the_holders_side_names_the_path_and_loses_nothing(
    mesh: Mesh, late_push: tuple[StateRepo, StateRepo]
) -> None:
    _, bravo = late_push
    (bravo.tree / "notes.txt").write_text("bravo's notes\n")
    bravo.commit(epoch=2, now=NOW + 3, message="turn")
    late = mesh.remote_tip()
    assert bravo.absorb(mesh.windows(), HIGH, epoch=2, now=NOW + 4) == ["notes.txt"]
    assert (bravo.tree / "notes.txt").read_text() == "bravo's notes\n"
    assert (bravo.tree / "alpha.txt").read_text() == "alpha's late\n"  # no conflict there
    assert bravo.push() is True and bravo._descends(late, mesh.remote_tip())
    theirs = git.Repo(mesh.remote).git.show(f"{late}:notes.txt")
    assert theirs == "alpha's late notes"  # in the history


def test_a_remote_of_a_newer_holder_is_never_merged(
    mesh: Mesh, late_push: tuple[StateRepo, StateRepo]
) -> None:
    _, bravo = late_push
    head = bravo.head()
    with pytest.raises(CommitAhead, match="the remote is at epoch 1, this holder at 0"):
        bravo.absorb(mesh.windows(), HIGH, epoch=0, now=NOW + 3)
    assert bravo.head() == head


def test_a_file_one_side_deleted_keeps_the_holders_side_whole(
    mesh: Mesh, late_push: tuple[StateRepo, StateRepo]
) -> None:
    _, bravo = late_push
    (bravo.tree / "notes.txt").unlink()
    bravo.commit(epoch=2, now=NOW + 3, message="turn")
    assert bravo.absorb(mesh.windows(), HIGH, epoch=2, now=NOW + 4) == ["notes.txt"]
    assert not (bravo.tree / "notes.txt").exists() and bravo.push() is True
    assert (bravo.tree / "alpha.txt").read_text() == "alpha's late\n"  # the rest merged


# --- holder writes, standbys queue ---------------------------------------------------


@pytest.fixture
def pair(mesh: Mesh) -> tuple[StateRepo, StateRepo]:
    """alpha the holder with one commit pushed, bravo a standby that has it."""
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    return alpha, bravo


def queue_change(repo: StateRepo, name: str, text: str, now: float = NOW + 10) -> str:
    (repo.tree / name).write_text(text)
    made = repo.commit(epoch=None, now=now, message="queued")
    assert made is not None and repo.send_queue() == made
    return made


def take_all(holder: StateRepo, mesh: Mesh, now: float = NOW + 20) -> dict[str, list[str] | None]:
    taken = {
        who: holder.take_queued(who, sha, mesh.windows(), HIGH, epoch=1, now=now)
        for who, sha in holder.queued(mesh.windows()).items()
    }
    assert holder.push() is True
    return taken


def test_a_standbys_change_is_queued_taken_by_the_holder_and_reaches_everyone(
    mesh: Mesh,
) -> None:
    alpha, bravo, charlie = mesh.repo("alpha"), mesh.repo("bravo"), mesh.repo("charlie")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    queued = queue_change(bravo, "bravo.txt", "by hand on bravo\n")
    assert bravo.pull(mesh.windows(), HIGH, now=NOW + 11) == Pulled(queued, 0)  # kept
    assert take_all(alpha, mesh) == {mesh.ids["bravo"].machine_id: []}
    assert (alpha.tree / "bravo.txt").read_text() == "by hand on bravo\n"
    assert charlie.pull(mesh.windows(), HIGH, now=NOW + 21).head == mesh.remote_tip()
    assert (charlie.tree / "bravo.txt").read_text() == "by hand on bravo\n"
    assert bravo.pull(mesh.windows(), HIGH, now=NOW + 22).head == mesh.remote_tip()
    assert bravo.send_queue() is None
    assert take_all(alpha, mesh) == {mesh.ids["bravo"].machine_id: None}  # taken before


def test_a_conflicting_queued_change_keeps_the_holders_side_and_names_the_path(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = pair
    queued = queue_change(bravo, "notes.txt", "bravo's notes\n")
    holder_commits(alpha, "alpha's notes\n", NOW + 15)
    assert take_all(alpha, mesh) == {mesh.ids["bravo"].machine_id: ["notes.txt"]}
    assert (alpha.tree / "notes.txt").read_text() == "alpha's notes\n"
    assert show(alpha, f"{queued}:notes.txt") == "bravo's notes"  # nothing lost
    pulled = bravo.pull(mesh.windows(), HIGH, now=NOW + 30)
    assert pulled.head == mesh.remote_tip() and pulled.conflicts == ()
    assert (bravo.tree / "notes.txt").read_text() == "alpha's notes\n"


def test_a_standby_keeps_pulling_while_its_queue_waits_and_its_queue_only_grows(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = pair
    first = queue_change(bravo, "bravo.txt", "bravo's\n")
    holder_commits(alpha, "two\n", NOW + 15)  # the holder moves on before it takes
    pulled = bravo.pull(mesh.windows(), HIGH, now=NOW + 16)
    assert pulled.taken == 1 and pulled.conflicts == ()
    assert (bravo.tree / "notes.txt").read_text() == "two\n"
    assert (bravo.tree / "bravo.txt").read_text() == "bravo's\n"
    merged = bravo.send_queue()
    assert merged == bravo.head() and bravo._descends(first, merged)
    assert take_all(alpha, mesh) == {mesh.ids["bravo"].machine_id: []}
    assert (alpha.tree / "bravo.txt").read_text() == "bravo's\n"
    assert bravo.pull(mesh.windows(), HIGH, now=NOW + 30).head == mesh.remote_tip()


def test_a_standbys_change_before_its_first_pull_is_merged_not_refused(mesh: Mesh) -> None:
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    (bravo.tree / "bravo.txt").write_text("before any pull\n")
    assert bravo.commit(epoch=None, now=NOW + 1, message="queued") is not None
    pulled = bravo.pull(mesh.windows(), HIGH, now=NOW + 2)
    assert pulled.taken == 1 and (bravo.tree / "notes.txt").read_text() == "one\n"
    bravo.send_queue()
    take_all(alpha, mesh)
    assert (alpha.tree / "bravo.txt").read_text() == "before any pull\n"


def set_remote_ref(mesh: Mesh, ref: str, sha: str) -> None:
    """Move a ref on the remote by hand (the object is there)."""
    git.Repo(mesh.remote).git.update_ref(ref, sha)


def test_a_forged_queued_commit_is_refused_and_the_holder_unchanged(
    mesh: Mesh, tmp_path: Path
) -> None:
    alpha = mesh.repo("alpha")
    holder_commits(alpha, "one\n")
    head = alpha.head()
    forged = forge(mesh, tmp_path, key=None, date=NOW + 10)  # on the state ref: undo it
    set_remote_ref(mesh, REF, head or "")
    bravo_id = mesh.ids["bravo"].machine_id
    set_remote_ref(mesh, f"refs/baton/queue/{bravo_id}", forged)
    with pytest.raises(UntrustedCommit, match="not signed"):
        alpha.take_queued(bravo_id, forged, mesh.windows(), HIGH, epoch=1, now=NOW + 20)
    assert alpha.head() == head and (alpha.tree / "notes.txt").read_text() == "one\n"


def test_queues_of_removed_machines_strangers_and_itself_are_not_looked_at(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = pair
    sha = queue_change(bravo, "bravo.txt", "x\n")
    for who in ("stranger", mesh.ids["alpha"].machine_id, mesh.ids["charlie"].machine_id):
        set_remote_ref(mesh, f"refs/baton/queue/{who}", sha)
    mesh.entries["charlie"] = replace(mesh.entries["charlie"], revoked_at=NOW + 5)
    assert alpha.queued(mesh.windows()) == {mesh.ids["bravo"].machine_id: sha}


def test_a_new_holders_first_commit_fences_out_every_older_holder(mesh: Mesh) -> None:
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n", epoch=1)
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    opened = bravo.open_epoch(2, NOW + 1)
    assert opened is not None and bravo.push() is True
    assert bravo.open_epoch(2, NOW + 2) is None  # once
    (alpha.tree / "notes.txt").write_text("alpha, stale\n")
    alpha.commit(epoch=1, now=NOW + 3, message="turn")
    assert alpha.push() is False  # never a fast-forward over the newer epoch
    with pytest.raises(CommitAhead, match="epoch 2, this holder at 1"):
        alpha.absorb(mesh.windows(), HIGH, epoch=1, now=NOW + 4)
    assert mesh.remote_tip() == opened


def test_a_file_the_standby_deleted_and_the_holder_changed_is_the_holders_the_rest_merged(
    mesh: Mesh,
) -> None:
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    odd = ":(glob)*\n-x.txt"  # a pathspec's magic and a newline: a name, nothing more
    (alpha.tree / odd).write_text("one\n")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    (bravo.tree / "notes.txt").unlink()
    (bravo.tree / odd).unlink()
    (bravo.tree / "bravo.txt").write_text("bravo's\n")
    assert bravo.commit(epoch=None, now=NOW + 1, message="queued") is not None
    (alpha.tree / odd).write_text("two\n")
    holder_commits(alpha, "two\n", NOW + 2)
    pulled = bravo.pull(mesh.windows(), HIGH, now=NOW + 3)
    assert sorted(pulled.conflicts) == sorted(["notes.txt", odd])
    assert (bravo.tree / odd).read_text() == "two\n"
    assert (bravo.tree / "notes.txt").read_text() == "two\n"  # the remote's, whole
    assert (bravo.tree / "bravo.txt").read_text() == "bravo's\n"  # no conflict there
    assert bravo.send_queue() == bravo.head()
    assert take_all(alpha, mesh) == {mesh.ids["bravo"].machine_id: []}  # signed, verified
    assert (alpha.tree / "notes.txt").read_text() == "two\n"
    assert (alpha.tree / "bravo.txt").read_text() == "bravo's\n"


def test_a_lock_left_by_a_stop_mid_commit_is_cleared_once_stale_never_while_young(
    mesh: Mesh,
) -> None:
    alpha = mesh.repo("alpha")
    holder_commits(alpha, "one\n")
    index_lock = alpha.git_dir / "index.lock"
    ref_lock = alpha.git_dir / "refs" / "baton" / "verified-state.lock"
    for lock in (index_lock, ref_lock):
        lock.write_bytes(b"")
    (alpha.tree / "notes.txt").write_text("two\n")
    with pytest.raises(StateSyncError, match=r"index\.lock"):  # young: a git may hold it
        alpha.commit(epoch=1, now=NOW + 1, message="turn")
    old = time.time() - state_git.STALE_LOCK_S - 1
    for lock in (index_lock, ref_lock):
        os.utime(lock, (old, old))
    assert alpha.commit(epoch=1, now=NOW + 1, message="turn") is not None
    assert not index_lock.exists() and not ref_lock.exists()


def test_a_queue_of_more_commits_than_one_merge_takes_is_taken_a_part_at_a_time(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_git, "MAX_NEW_COMMITS", 2)
    alpha, bravo = pair
    for n in range(5):  # a standby offline a while, a tool writing its state
        (bravo.tree / f"bravo{n}.txt").write_text(f"{n}\n")
        bravo.commit(epoch=None, now=NOW + n, message="queued")
    sha = bravo.send_queue() or ""
    who = mesh.ids["bravo"].machine_id
    for n in range(3):
        assert alpha.take_queued(who, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 10 + n) == []
    assert alpha.take_queued(who, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20) is None
    assert sorted(p.name for p in alpha.tree.glob("bravo*.txt")) == [
        f"bravo{n}.txt" for n in range(5)
    ]


def test_a_late_push_of_more_commits_than_one_merge_takes_is_merged_a_part_at_a_time(
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
    pushes = []
    for n in range(3):  # what StateSyncActor does each tick: push, else absorb
        if bravo.push():
            pushes.append(n)
            break
        bravo.absorb(mesh.windows(), HIGH, epoch=2, now=NOW + 10 + n)
    assert pushes and mesh.remote_tip() == bravo.head()


def remove_charlie(mesh: Mesh, at: float) -> None:
    mesh.entries["charlie"] = replace(mesh.entries["charlie"], status=Status.REVOKED, revoked_at=at)


def test_after_the_holders_removal_mark_a_back_dated_commit_is_refused(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    alpha = mesh.repo("alpha")
    alpha.pull(mesh.windows(), HIGH, now=NOW)
    remove_charlie(mesh, NOW + 50)
    marked = alpha.mark_removals(mesh.windows(), 1, NOW + 1)  # a clock behind the removal
    assert marked is not None and alpha.push()
    assert alpha.mark_removals(mesh.windows(), 1, NOW + 2) is None  # once
    assert synced.pull(mesh.windows(), HIGH, now=NOW).head == marked
    forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW + 40)  # in its window
    refused(mesh, synced, "dated before its parent")


def test_the_holder_never_merges_a_removed_machines_commit_new_to_it(
    mesh: Mesh, synced: StateRepo, tmp_path: Path
) -> None:
    alpha = mesh.repo("alpha")
    alpha.pull(mesh.windows(), HIGH, now=NOW)
    (alpha.tree / "alpha.txt").write_text("alpha's\n")
    head = alpha.commit(epoch=1, now=NOW + 45, message="turn")
    forge(mesh, tmp_path, key=seed_key(mesh.ids["charlie"]), date=NOW + 40)  # lands first
    remove_charlie(mesh, NOW + 50)
    assert alpha.push() is False
    with pytest.raises(UntrustedCommit, match="removed: not merged"):
        alpha.absorb(mesh.windows(), HIGH, epoch=1, now=NOW + 60)
    assert alpha.head() == head


def test_a_file_too_large_is_never_synced_and_named(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha = mesh.repo("alpha")
    (alpha.tree / "grows.bin").write_bytes(b"small")
    holder_commits(alpha, "one\n")
    with (alpha.tree / "huge.bin").open("wb") as f:
        f.truncate(state_repo.MAX_FILE_BYTES + 1)  # sparse: git would still read it all
    with (alpha.tree / "grows.bin").open("ab") as f:
        f.truncate(state_repo.MAX_FILE_BYTES + 1)
    made = holder_commits(alpha, "two\n")
    assert alpha.too_big == ["grows.bin", "huge.bin"]
    tree = git.Repo(mesh.remote).git.ls_tree("-r", "--long", made)
    assert "huge.bin" not in tree and " 5\tgrows.bin" in tree  # its last version kept
    assert alpha.commit(epoch=1, now=NOW + 1, message="turn") is None  # nothing else
    (alpha.tree / "huge.bin").unlink()
    with (alpha.tree / "grows.bin").open("wb") as f:
        f.write(b"small again")
    assert alpha.commit(epoch=1, now=NOW + 2, message="turn") is not None
    assert alpha.too_big == []


# --- found by an attack review --------------------------------------------------------


def test_a_git_repository_made_in_the_tree_without_a_commit_stops_nothing(mesh: Mesh) -> None:
    alpha = mesh.repo("alpha")
    holder_commits(alpha, "one\n")
    subprocess.run(["git", "init", "-q", str(alpha.tree / "scratch")], check=True, timeout=30)
    (alpha.tree / "notes.txt").write_text("two\n")
    assert alpha.commit(epoch=1, now=NOW + 1, message="turn") is not None
    assert alpha.nested == ["scratch"]


def test_a_crash_between_git_commit_and_the_head_record_loses_no_change(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, bravo = pair
    (bravo.tree / "bravo.txt").write_text("by hand on bravo\n")

    def killed(self: StateRepo) -> str:  # git commit ran; the head record never did
        raise StateSyncError("killed")

    with monkeypatch.context() as m:
        m.setattr(StateRepo, "_made", killed)
        with pytest.raises(StateSyncError):
            bravo.commit(epoch=None, now=NOW + 1, message="queued")
    bravo = mesh.repo("bravo")  # the node starts again
    holder_commits(alpha, "two\n", NOW + 3)
    bravo.pull(mesh.windows(), HIGH, now=NOW + 4)
    assert (bravo.tree / "bravo.txt").read_text() == "by hand on bravo\n"
    assert bravo.send_queue() == bravo.head()


def test_a_merge_never_leaves_the_tree_half_merged(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, bravo = pair
    sha = queue_change(bravo, "notes.txt", "bravo's notes\n")
    holder_commits(alpha, "alpha's notes\n", NOW + 11)
    real = state_git.StateGit._git

    def dies_at_the_move(self: state_git.StateGit, *args: str, **kw: Any) -> Any:
        if args[:2] == ("reset", "-q"):
            raise KeyboardInterrupt("kill -9 here")
        return real(self, *args, **kw)

    with monkeypatch.context() as m:
        m.setattr(state_git.StateGit, "_git", dies_at_the_move)
        with pytest.raises(KeyboardInterrupt):
            alpha.take_queued(
                mesh.ids["bravo"].machine_id, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20
            )
    assert (alpha.tree / "notes.txt").read_text() == "alpha's notes\n"  # no markers
    alpha = mesh.repo("alpha")
    assert alpha.commit(epoch=1, now=NOW + 30, message="turn") is None


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
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    queue_change(bravo, "b.txt", "b\n")
    assert not marker.exists(), "the remote's core.alternateRefsCommand ran on this machine"


def test_a_file_a_standby_made_a_directory_keeps_the_holders_file(mesh: Mesh) -> None:
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
    taken = alpha.take_queued(
        mesh.ids["bravo"].machine_id, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20
    )
    assert taken == ["d"]
    assert (alpha.tree / "d").read_text() == "file d changed by the holder\n"
    assert (alpha.tree / "b.txt").read_text() == "b\n"  # the rest merged
    assert not list(alpha.tree.glob("d~*"))
    assert alpha.push()
    pulled = bravo.pull(mesh.windows(), HIGH, now=NOW + 30)
    assert pulled.head == alpha.head() and (bravo.tree / "d").is_file()


# --- found by a second attack review -----------------------------------------------------


@pytest.fixture
def logs(mesh: Mesh) -> tuple[StateRepo, StateRepo]:
    """alpha the holder and bravo a standby, both with a 20-line a.log."""
    alpha, bravo = mesh.repo("alpha"), mesh.repo("bravo")
    (alpha.tree / "a.log").write_text("".join(f"line {i}\n" for i in range(20)))
    holder_commits(alpha, "one\n")
    bravo.pull(mesh.windows(), HIGH, now=NOW)
    return alpha, bravo


def rotate_and_edit(standby: StateRepo, holder: StateRepo) -> None:
    """The standby rotates a.log to a.log.1 with a line changed; the holder changes a.log."""
    text = (standby.tree / "a.log").read_text().replace("line 3\n", "line 3 bravo\n")
    (standby.tree / "a.log").unlink()
    (standby.tree / "a.log.1").write_text(text)
    edited = (holder.tree / "a.log").read_text().replace("line 3\n", "line 3 alpha\n")
    (holder.tree / "a.log").write_text(edited)


def test_a_rename_on_one_side_never_loses_the_winners_changed_file(
    mesh: Mesh, logs: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = logs
    rotate_and_edit(bravo, alpha)
    sha = queue_change(bravo, "b.txt", "b\n")
    alpha.commit(epoch=1, now=NOW + 11, message="turn")
    who = mesh.ids["bravo"].machine_id
    taken = alpha.take_queued(who, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20)
    assert "a.log" in (taken or [])
    assert "line 3 alpha" in (alpha.tree / "a.log").read_text()  # the holder's, whole


def test_a_rename_on_a_standby_keeps_the_remotes_file_there_and_on_the_holder(
    mesh: Mesh, logs: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = logs
    rotate_and_edit(bravo, alpha)
    assert bravo.commit(epoch=None, now=NOW + 10, message="queued") is not None
    alpha.commit(epoch=1, now=NOW + 11, message="turn")
    assert alpha.push()
    pulled = bravo.pull(mesh.windows(), HIGH, now=NOW + 20)
    assert "a.log" in pulled.conflicts and "line 3 alpha" in (bravo.tree / "a.log").read_text()
    sha = bravo.send_queue() or ""
    alpha.take_queued(
        mesh.ids["bravo"].machine_id, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 30
    )
    assert "line 3 alpha" in (alpha.tree / "a.log").read_text()


def test_a_file_left_out_here_that_the_other_side_changes_is_moved_aside_not_in_the_way(
    mesh: Mesh, logs: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = logs
    with (bravo.tree / "a.log").open("ab") as f:  # too big: never committed, stays changed
        f.truncate(state_repo.MAX_FILE_BYTES + 1)
    (bravo.tree / "b.txt").write_text("b\n")
    assert bravo.commit(epoch=None, now=NOW + 10, message="queued") is not None
    assert bravo.too_big == ["a.log"]
    (alpha.tree / "a.log").write_text("the holder's new log\n")
    alpha.commit(epoch=1, now=NOW + 11, message="turn")
    assert alpha.push()
    pulled = bravo.pull(mesh.windows(), HIGH, now=NOW + 20)
    assert "a.log" in pulled.conflicts
    assert (bravo.tree / "a.log").read_text() == "the holder's new log\n"
    [kept] = list(bravo.tree.glob("a.log.local-*"))
    assert kept.stat().st_size == state_repo.MAX_FILE_BYTES + 1  # nothing lost


def test_an_untracked_file_left_out_where_a_queue_adds_one_is_moved_aside(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = pair
    with (alpha.tree / "dump.bin").open("wb") as f:
        f.truncate(state_repo.MAX_FILE_BYTES + 1)
    sha = queue_change(bravo, "dump.bin", "small\n")
    alpha.commit(epoch=1, now=NOW + 11, message="turn")
    who = mesh.ids["bravo"].machine_id
    assert alpha.take_queued(who, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20) == ["dump.bin"]
    assert (alpha.tree / "dump.bin").read_text() == "small\n"
    assert len(list(alpha.tree.glob("dump.bin.local-*"))) == 1


def test_a_stale_merge_index_lock_is_cleared(mesh: Mesh, pair: tuple[StateRepo, StateRepo]) -> None:
    alpha, bravo = pair
    sha = queue_change(bravo, "notes.txt", "bravo's\n")
    holder_commits(alpha, "alpha's\n", NOW + 11)
    lock = alpha.git_dir / "baton-merge.index.lock"
    lock.write_bytes(b"")
    old = time.time() - state_git.STALE_LOCK_S - 1
    os.utime(lock, (old, old))
    alpha.commit(epoch=1, now=NOW + 12, message="turn")  # a step clears stale locks
    who = mesh.ids["bravo"].machine_id
    assert alpha.take_queued(who, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20) == ["notes.txt"]


def test_a_symlink_against_a_file_is_named_by_its_own_path(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo]
) -> None:
    alpha, bravo = pair
    (bravo.tree / "f").symlink_to("notes.txt")
    sha = queue_change(bravo, "b.txt", "b\n")
    (alpha.tree / "f").write_text("a file\n")
    alpha.commit(epoch=1, now=NOW + 11, message="turn")
    who = mesh.ids["bravo"].machine_id
    assert alpha.take_queued(who, sha, mesh.windows(), HIGH, epoch=1, now=NOW + 20) == ["f"]
    assert (alpha.tree / "f").read_text() == "a file\n" and not (alpha.tree / "f").is_symlink()


def test_its_own_refs_read_alike_loose_or_packed(
    mesh: Mesh, pair: tuple[StateRepo, StateRepo]
) -> None:
    _, bravo = pair
    queue_change(bravo, "b.txt", "b\n")
    loose = (bravo.head(), bravo._own("HEAD"), bravo._own(state_repo.PUSHED))
    assert None not in loose and loose == (
        bravo._ref(state_git.VERIFIED),
        bravo._ref("HEAD"),
        bravo._ref(state_repo.PUSHED),
    )
    subprocess.run(
        ["git", f"--git-dir={bravo.git_dir}", "pack-refs", "--all"], check=True, timeout=30
    )
    assert not (bravo.git_dir / state_git.VERIFIED).exists()  # packed now
    assert (bravo.head(), bravo._own("HEAD"), bravo._own(state_repo.PUSHED)) == loose
    assert bravo.send_queue() is None  # sent before: the packed SENT read too
