"""StateSyncActor driven by hand (Tick, LeaseChanged, Flush) over real StateRepos and a
real remote: only a holder commits, with its epoch; a standby pulls; a refused commit,
a refused push and a remote that cannot be reached are counted and shown, and the actor
goes on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from baton.actors.messages import Tick
from baton.actors.state_sync_actor import Flush, StateSyncActor, StateView, SyncNow
from baton.adapters.metrics import Counters
from baton.core.clock import FakeClock
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.registry import entry_from_card
from baton.core.state_trust import signer_windows
from baton.stores.home import HomePaths
from baton.stores.identity_store import create_home
from baton.stores.state_repo import REF, StateRepo
from tests.waits import wait_for

NOW = 1_800_000_000.0


class Machine:
    def __init__(self, root: Path, name: str, remote: str, signers: Any) -> None:
        self.identity = create_home(root / name, name)
        self.repo = StateRepo(HomePaths(root / name), self.identity, remote)
        self.counters = Counters()
        self.view = StateView(remote)
        self.actor = StateSyncActor.start(
            self.repo,
            me=self.identity.machine_id,
            signers=signers,
            clock=FakeClock(wall_s=NOW),
            counters=self.counters,
            interval_ms=100,
            view=self.view,
            enabled=lambda: self.enabled,
        )
        self.now_ms = 0.0
        self.enabled = True  # the state_sync component flag, as this machine's gate says

    def tick(self) -> None:
        self.now_ms += 100
        self.actor.ask(Tick(self.now_ms), timeout=60)

    def lease(self, phase: Phase, epoch: int) -> None:
        self.actor.ask(LeaseChanged(phase, None, epoch, "test"), timeout=60)

    def write(self, text: str) -> None:
        (self.repo.tree / "notes.txt").write_text(text)


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[Machine, Machine, Path]]:
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True).close()
    entries: list[Any] = []

    def signers() -> Any:
        return signer_windows(entries)

    a = Machine(tmp_path, "alpha", f"file://{remote}", signers)
    b = Machine(tmp_path, "bravo", f"file://{remote}", signers)
    for m in (a, b):
        card = {
            **m.identity.public.to_dict(),
            "wire": "tcp://127.0.0.1:1",
            "http": "http://127.0.0.1:2",
        }
        entries.append(entry_from_card(card, NOW - 100))
    try:
        yield a, b, remote
    finally:
        a.actor.stop(timeout=30)
        b.actor.stop(timeout=30)


def in_repo(m: Machine, *args: str) -> str:
    return str(git.Git().execute(["git", f"--git-dir={m.repo.git_dir}", *args]))


def remote_message(remote: Path) -> str:
    return str(git.Repo(remote).commit(REF).message)


def remote_ref(remote: Path, ref: str = REF) -> str | None:
    listed = git.Repo(remote).git.for_each_ref("--format=%(objectname)", ref)
    return listed or None


def test_only_a_holder_pushes_the_state_and_with_its_epoch(
    machines: tuple[Machine, Machine, Path],
) -> None:
    a, b, remote = machines
    a.write("one\n")
    a.tick()  # a standby: its change is committed and queued, never pushed as the state
    assert a.counters.get("state.queued") == 1 and a.counters.get("state.queue_sent") == 1
    assert remote_ref(remote) is None
    assert remote_ref(remote, f"refs/baton/queue/{a.identity.machine_id}") == a.repo.head()
    a.lease(Phase.HOLDING, 7)
    a.tick()  # the holder now: it opens its epoch, and pushes
    assert a.view.current["head"] == a.view.current["pushed"] == a.repo.head() is not None
    assert "Baton-Epoch: 7" in remote_message(remote)
    b.tick()  # bravo has not heard of epoch 7 yet: it waits
    assert b.repo.head() is None and b.counters.get("state.ahead") == 1
    assert b.view.current["refused"] is None  # no alarm: a holder it will hear of
    b.lease(Phase.STANDBY, 7)
    b.tick()
    assert (b.repo.tree / "notes.txt").read_text() == "one\n"
    assert b.counters.get("state.taken") == 2 and b.view.current["head"] == a.repo.head()


def test_flush_commits_at_once_but_only_while_holding(
    machines: tuple[Machine, Machine, Path],
) -> None:
    a, _, _ = machines
    a.write("one\n")
    a.actor.ask(Flush(), timeout=60)
    assert a.repo.head() is None
    a.lease(Phase.HOLDING, 2)
    a.actor.ask(Flush(), timeout=60)
    assert a.repo.head() is not None and a.counters.get("state.pushed") == 1


def test_a_commit_made_apart_is_merged_when_its_machine_becomes_the_holder(
    machines: tuple[Machine, Machine, Path],
) -> None:
    """alpha committed a change before it ever saw the remote (a holder cut off from it,
    say): when it holds again, the remote's history and its own are merged, not lost."""
    a, b, remote = machines
    b.lease(Phase.HOLDING, 1)
    b.write("bravo's\n")
    b.tick()
    (a.repo.tree / "alpha.txt").write_text("alpha's\n")
    assert a.repo.commit(epoch=1, now=NOW, message="made apart") is not None
    a.lease(Phase.HOLDING, 2)
    a.tick()
    assert a.view.current["pushed"] == remote_ref(remote) == a.repo.head()
    assert (a.repo.tree / "notes.txt").read_text() == "bravo's\n"
    assert (a.repo.tree / "alpha.txt").read_text() == "alpha's\n"


def test_a_rewritten_remote_is_refused_counted_and_never_forced_over(
    machines: tuple[Machine, Machine, Path],
) -> None:
    a, b, remote = machines
    b.lease(Phase.HOLDING, 1)
    b.write("bravo's\n")
    b.tick()
    a.lease(Phase.STANDBY, 1)
    a.tick()
    assert a.repo.head() == remote_ref(remote)
    bare = git.Repo(remote)
    tree = bare.git.rev_parse(f"{REF}^{{tree}}")
    rewrite = bare.git.commit_tree(tree, "-m", "rewritten\n\nBaton-Epoch: 1")
    bare.git.update_ref(REF, rewrite)
    a.tick()
    assert a.counters.get("state.untrusted") == 1
    assert "rewrites history" in a.view.current["refused"]["reason"]
    a.lease(Phase.HOLDING, 2)
    a.tick()
    assert remote_ref(remote) == rewrite  # never forced over
    assert a.counters.get("state.push_refused") == 1 and a.counters.get("state.untrusted") == 3
    assert a.actor.is_alive()


def test_a_refused_commit_is_shown_counted_and_the_tree_kept(
    machines: tuple[Machine, Machine, Path], tmp_path: Path
) -> None:
    _, b, remote = machines
    stranger = Machine(tmp_path, "stranger", f"file://{remote}", lambda: {})
    try:
        stranger.lease(Phase.HOLDING, 1)
        stranger.write("not a member's\n")
        stranger.tick()
    finally:
        stranger.actor.stop(timeout=30)
    b.tick()
    refused = b.view.current["refused"]
    made = in_repo(stranger, "rev-list", str(stranger.repo.head())).split()
    assert refused is not None and refused["commit"] in made  # the first it verified
    assert "not a member's" in refused["reason"] and b.counters.get("state.untrusted") == 1
    assert not (b.repo.tree / "notes.txt").exists() and b.repo.head() is None
    b.tick()  # the same refusal again: counted again, the actor goes on
    assert b.counters.get("state.untrusted") == 2 and b.actor.is_alive()


def test_a_remote_that_cannot_be_reached_is_counted_and_tried_again(tmp_path: Path) -> None:
    m = Machine(tmp_path, "alpha", f"file://{tmp_path}/nowhere.git", lambda: {})
    try:
        m.tick()
        m.lease(Phase.HOLDING, 1)
        m.write("x\n")
        m.tick()
        assert m.counters.get("state.unavailable") >= 2 and m.actor.is_alive()
        assert (
            m.repo.head() is not None and m.view.current["pushed"] is None
        )  # committed, not pushed
    finally:
        m.actor.stop(timeout=30)


def test_an_unforeseen_failure_is_counted_and_the_actor_goes_on(
    machines: tuple[Machine, Machine, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure no BatonError names (git saying what nobody expected) must not end the
    actor: the node would restart, meet the same commit, and end again."""
    _, b, _ = machines

    def broken(*_: object) -> None:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(b.repo, "pull", broken)
    b.tick()
    b.tick()
    assert b.counters.get("state.unavailable") == 2 and b.actor.is_alive()


def test_a_stale_holders_push_is_fenced_out_and_its_change_reaches_the_new_holder(
    machines: tuple[Machine, Machine, Path],
) -> None:
    a, b, remote = machines
    a.lease(Phase.HOLDING, 1)
    a.write("one\n")
    a.tick()
    b.lease(Phase.STANDBY, 1)
    b.tick()  # bravo has "one"
    b.lease(Phase.HOLDING, 2)
    b.tick()  # its first tick as holder: it pulls and opens epoch 2
    opened = remote_ref(remote)
    assert "Baton-Epoch: 2" in remote_message(remote)
    (a.repo.tree / "alpha.txt").write_text("alpha's late\n")
    a.actor.ask(Flush(), timeout=60)  # alpha does not know yet that it is stale
    assert remote_ref(remote) == opened and a.counters.get("state.fenced") == 1
    a.lease(Phase.STANDBY, 2)
    a.tick()  # a standby now: its commit is merged with the remote's and queued
    assert a.counters.get("state.queue_sent") == 1
    b.tick()
    assert b.counters.get("state.queue_taken") == 1
    assert (b.repo.tree / "alpha.txt").read_text() == "alpha's late\n"
    assert b.view.current["pushed"] == b.repo.head() == remote_ref(remote)
    assert b.view.current["conflicts"] == []


def test_a_machine_whose_clock_lags_its_join_dates_its_commits_at_its_join(
    tmp_path: Path,
) -> None:
    """The registry dates a join by the approver's clock; a commit dated before it is
    refused by every other member (git's window), and so is every one after it."""
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True).close()
    entries: list[Any] = []
    a = Machine(tmp_path, "alpha", f"file://{remote}", lambda: signer_windows(entries))
    b = Machine(tmp_path, "bravo", f"file://{remote}", lambda: signer_windows(entries))
    try:
        for m, joined in ((a, NOW - 100), (b, NOW + 500)):  # bravo's clock: 500 s behind
            card = {**m.identity.public.to_dict(), "wire": "tcp://127.0.0.1:1"}
            entries.append(entry_from_card({**card, "http": "http://127.0.0.1:2"}, joined))
        a.lease(Phase.HOLDING, 1)
        a.write("one\n")
        a.tick()
        b.lease(Phase.STANDBY, 1)
        b.tick()
        (b.repo.tree / "bravo.txt").write_text("by hand\n")
        b.tick()  # queued, dated at its join
        a.tick()
        assert a.counters.get("state.queue_taken") == 1 and a.counters.get("state.untrusted") == 0
        assert (a.repo.tree / "bravo.txt").read_text() == "by hand\n"
    finally:
        a.actor.stop(timeout=30)
        b.actor.stop(timeout=30)


def test_a_new_holder_with_a_change_in_the_way_of_the_remotes_still_takes_it_and_pushes(
    machines: tuple[Machine, Machine, Path],
) -> None:
    """bravo's tree has a change not committed yet (the archive it rewrote at its term's
    start, or its agent's first turn) to a file the remote changed since its last pull:
    git will not move the tree over it. bravo commits its change first and merges the
    remote's (the remote's side kept in the conflict), so it is never wedged."""
    a, b, remote = machines
    a.lease(Phase.HOLDING, 1)
    a.write("one\n")
    a.tick()
    b.lease(Phase.STANDBY, 1)
    b.tick()
    assert (b.repo.tree / "notes.txt").read_text() == "one\n"
    a.write("two\n")
    a.tick()  # the remote moves on; bravo has not pulled it
    a.lease(Phase.STANDBY, 2)
    b.write("bravo's own\n")
    b.lease(Phase.HOLDING, 2)
    b.tick()
    assert b.view.current["pushed"] == remote_ref(remote) == b.repo.head() is not None
    assert "Baton-Epoch: 2" in remote_message(remote)
    assert (b.repo.tree / "notes.txt").read_text() == "two\n"  # the remote's, kept
    assert b.view.current["conflicts"] == ["notes.txt"]  # and named
    history = in_repo(b, "log", "-p", "--format=%s", "HEAD")
    assert "+bravo's own" in history  # bravo's is in the history
    assert b.counters.get("state.unavailable") == 0  # no failed pull on the way
    assert b.counters.get("state.queued") == 0  # a holder's own commit, not a queued one


def sync_now(m: Machine, done: list[str], said: str) -> None:
    """A SyncNow to ``m``, waited on until it says ``said`` (it answers after its step)."""
    answered = threading.Event()
    m.actor.tell(SyncNow(reply=lambda: (done.append(said), answered.set())))
    assert answered.wait(60), f"no answer: {said}"


def test_sync_now_is_each_roles_step_at_once_then_a_reply(
    machines: tuple[Machine, Machine, Path],
) -> None:
    """The pool's topic handoff: the old machine queues its change (its step now), the
    holder takes it and pushes (its step now), the new machine pulls (its step now);
    each says when it is done."""
    a, b, _ = machines
    a.lease(Phase.HOLDING, 2)
    b.lease(Phase.STANDBY, 2)
    a.tick()  # the holder opens its epoch
    done: list[str] = []
    (b.repo.tree / "topic-1.txt").write_text("bravo's turn\n")  # bravo ran the topic
    sync_now(b, done, "bravo queued")
    sync_now(a, done, "alpha pushed")
    assert (a.repo.tree / "topic-1.txt").read_text() == "bravo's turn\n"
    (a.repo.tree / "topic-1.txt").write_text("bravo's turn\nalpha's turn\n")
    sync_now(a, done, "alpha pushed")
    sync_now(b, done, "bravo pulled")
    assert (b.repo.tree / "topic-1.txt").read_text() == "bravo's turn\nalpha's turn\n"
    assert done == ["bravo queued", "alpha pushed", "alpha pushed", "bravo pulled"]


class Held:
    """A machine's repo whose first commit waits for ``go``: a step the actor is busy in
    (every standby step commits once)."""

    def __init__(self, repo: StateRepo) -> None:
        self.repo = repo
        self.steps = 0
        self.inside, self.go = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)

    def commit(self, *args: Any, **kw: Any) -> Any:
        self.steps += 1
        self.inside.set()
        assert self.go.wait(30)
        return self.repo.commit(*args, **kw)


def test_sync_nows_that_wait_while_a_step_runs_are_answered_by_one_step(
    machines: tuple[Machine, Machine, Path],
) -> None:
    """A burst of handoffs (a dead machine's topics moving at once) costs one step more,
    not one each in a row; each is answered only by a step begun after it came."""
    _, b, _ = machines
    held = Held(b.repo)
    actor = StateSyncActor.start(
        held,
        me=b.identity.machine_id,
        signers=lambda: {},
        clock=FakeClock(wall_s=NOW),
        counters=Counters(),
        interval_ms=100,
        view=StateView("test"),
    )
    done: list[str] = []
    try:
        actor.tell(SyncNow(reply=lambda: done.append("first")))
        assert held.inside.wait(30)  # its step runs: the next ones wait behind it
        for n in range(4):
            actor.tell(SyncNow(reply=lambda n=n: done.append(f"then {n}")))  # type: ignore[misc]
        assert done == []  # nothing answered before its step
        held.go.set()
        wait_for(lambda: len(done) == 5, 30, "every SyncNow answered")
        assert done == ["first", "then 0", "then 1", "then 2", "then 3"]
        assert held.steps == 2  # the one running, and one for the four behind it
    finally:
        held.go.set()
        actor.stop(timeout=30)


def test_with_the_flag_off_nothing_moves_and_a_handoffs_step_answers_at_once(
    machines: tuple[Machine, Machine, Path],
) -> None:
    a, b, remote = machines
    a.lease(Phase.HOLDING, 2)
    b.lease(Phase.STANDBY, 2)
    a.tick()
    pushed = remote_ref(remote)
    a.enabled = b.enabled = False
    a.write("while off\n")
    done: list[str] = []
    a.tick()
    a.actor.ask(Flush(), timeout=60)
    sync_now(a, done, "alpha")
    sync_now(b, done, "bravo")
    assert done == ["alpha", "bravo"]  # answered, so a topic's handoff goes on
    assert remote_ref(remote) == pushed and not (b.repo.tree / "notes.txt").exists()
    assert a.view.current["disabled"] is True
    a.enabled = b.enabled = True
    a.tick()
    b.tick()
    assert (b.repo.tree / "notes.txt").read_text() == "while off\n"
    assert a.view.current["disabled"] is False and remote_ref(remote) != pushed
