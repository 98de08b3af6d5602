"""StateRepo: the agent's state directory as a git working tree whose commits are signed
with the machine's key (git's SSH signing) and whose fetched commits are all verified
before they reach the tree (StateSync). The plumbing and the verification are
baton.stores.state_git, merging is baton.stores.state_merge; the rules are
baton.core.state_trust.

Holder writes, standbys queue:
- **The holder** commits the tree, signed and stamped with its lease epoch, and moves
  the remote's ``refs/baton/state`` by fast-forward only, never forced. A new holder
  first opens its epoch with a commit of its own (empty if nothing changed): after it,
  a push of an older holder can never fast-forward, and that holder will not merge a
  remote of a newer epoch (fencing, in the remote's history).
- **A standby** commits a change made in its tree (by hand, or by a tool) at its
  head's epoch and sends it to ``refs/baton/queue/<machine id>`` on the remote; the
  holder verifies it and merges it in, its own side kept whole where git cannot merge
  both, the paths named. Meanwhile the standby keeps pulling: the remote's new commits
  are merged into its queued ones (the remote's side kept in a conflict), so
  its queue always descends from what it sent before, and its tree from both.
- A holder whose last push never landed (lost in a failover) is a standby with queued
  commits: they reach the next holder the same way. Nothing is dropped either way; a
  losing side stays in the history.

Refs in the git directory:
- ``refs/baton/verified-state``: the newest commit the tree holds, verified or made
  here.
- ``refs/baton/pushed-state``: the newest commit known to be on the remote's state.
- ``refs/baton/fetched-state``: the remote's state as last fetched, verified or not.
- ``refs/baton/queue-sent``: the queued commit this machine last sent.
- ``refs/baton/taken/<machine id>``: a standby's queue as the holder last fetched it.

Invariants:
- Nothing fetched reaches ``state/`` before ``judge`` passed every new commit; a state
  tip that does not descend from the last one this machine knew the remote had is a
  rewrite, refused as a whole.
- The tree moves only to a verified descendant of what it held, or to a merge of one
  with it.
- Commits are made at ``max(now, parents' times)`` with a lease epoch in a
  ``Baton-Epoch`` trailer, never below a parent's.
- What a commit leaves out is never staged and named at each commit: a file over
  MAX_FILE_BYTES (git never even reads it; a tracked one keeps its last committed
  version), a git repository of its own, a file git cannot read.
- A step a stop cut short is taken up by the next (``_recover``): a commit made but
  not recorded, a merge git left; lock files older than a git step are cleared.
- Every commit a pull or a merge takes is judged first; more than MAX_NEW_COMMITS are
  taken a verified part at a time.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Mapping

from baton.core.errors import CommitAhead, StateSyncError, UntrustedCommit
from baton.core.state_trust import EPOCH_TRAILER, Pulled, SignerWindow
from baton.stores.git_cli import first_error_line, push_guard, shown
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.stores.state_git import VERIFIED
from baton.stores.state_merge import StateMerge

log = logging.getLogger("baton.state")

REF = "refs/baton/state"
QUEUE = "refs/baton/queue/"
FETCHED = "refs/baton/fetched-state"
PUSHED = "refs/baton/pushed-state"
SENT = "refs/baton/queue-sent"
TAKEN = "refs/baton/taken/"
MAX_FILE_BYTES = 16 * 1024 * 1024  # a larger file in the tree is not synced


class StateRepo(StateMerge):
    def __init__(
        self, paths: HomePaths, identity: MachineIdentity, remote: str, timeout_s: float = 10.0
    ) -> None:
        super().__init__(paths, identity, remote, timeout_s)

    def commit(
        self, *, epoch: int | None, now: float, message: str, empty: bool = False
    ) -> str | None:
        """Commit every change in the tree, signed, at ``epoch`` (None: the head's, as a
        standby's queued change is); None if nothing changed and ``empty`` is not set."""
        self.clear_stale_locks()
        self._recover()
        status = self._git("status", "--porcelain", "-z", "--untracked-files=all").stdout
        if not empty and not status:
            return None
        self.too_big, nested, self.unreadable = self._left_out(status)
        keep_out = [f":(top,exclude,literal){p}" for p in self.too_big + nested + self.unreadable]
        spec = "\0".join([":(top)", *keep_out])
        self._ok("add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul", input=spec)
        staged = self._ok("ls-files", "-s", "-z")
        links = [e.split("\t", 1)[1] for e in staged.split("\0") if e.startswith("160000")]
        self.nested = sorted({*nested, *links})
        if not empty and self._git("diff", "--cached", "--quiet").returncode == 0:
            return None
        parent = self.head()
        when = math.floor(now)
        if parent is not None:
            when = max(when, self._time(parent))
        stamp = f"{when} +0000"
        self._ok(
            "commit",
            "-q",
            "-S",
            "--no-verify",
            "--allow-empty",
            "-m",
            f"{message}\n\n{EPOCH_TRAILER}: {self._epoch(parent) if epoch is None else epoch}\n",
            env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )
        return self._made()

    def _left_out(self, status: str) -> tuple[list[str], list[str], list[str]]:
        """What of the changes in ``status`` (git's porcelain, -z) is not committed: files
        over MAX_FILE_BYTES (git never reads them; a tracked one keeps its last
        committed version), git repositories of their own (``dir/``: git cannot add one
        without a commit, and would sync only a pointer), and files it cannot read."""
        fields = iter(status.split("\0"))
        big, nested, unreadable = [], [], []
        for entry in fields:
            if len(entry) < 4:
                continue
            if entry[0] in "RC":
                next(fields, None)  # a staged rename's old path
            path = entry[3:]
            if path.endswith("/"):
                nested.append(path.rstrip("/"))
                continue
            try:
                st = (self.tree / path).lstat()
            except FileNotFoundError:
                continue
            except OSError:  # a directory on the way git may not search either
                unreadable.append(path)
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size > MAX_FILE_BYTES:
                big.append(path)
            elif stat.S_ISREG(st.st_mode) and not os.access(self.tree / path, os.R_OK):
                unreadable.append(path)
        return sorted(big), sorted(nested), sorted(unreadable)

    def open_epoch(self, epoch: int, now: float) -> str | None:
        """A new holder's first commit (with whatever changed, or empty), unless the head
        is of ``epoch`` already; pushed, it fences every older holder out."""
        head = self.head()
        if head is not None and self._epoch(head) >= epoch:
            return None
        return self.commit(epoch=epoch, now=now, message=f"holder at epoch {epoch}", empty=True)

    def mark_removals(
        self, windows: Mapping[str, SignerWindow], epoch: int, now: float
    ) -> str | None:
        """A holder's commit (empty if nothing changed) dated at or after the newest
        removal the registry shows, unless the head is that late already. Once it is
        on the remote, no removed machine can add a commit dated into its window on
        top of the state: it would be dated before its parent."""
        removals = [w.before for w in windows.values() if w.before is not None]
        head = self.head()
        if not removals or head is None or self._time(head) >= max(removals):
            return None
        message = "machines removed"
        return self.commit(epoch=epoch, now=max(now, max(removals)), message=message, empty=True)

    def push(self) -> bool:
        """Fast-forward the remote's state to the head; False if the remote has moved
        elsewhere (absorb first). Never forced."""
        head = self.head()
        if head is None:
            return True
        proc = self._git(
            "push", "--porcelain", *push_guard(self.remote), self.remote, f"{head}:{REF}"
        )
        if proc.returncode == 0:
            self._ok("update-ref", PUSHED, head)
            return True
        if "[rejected]" in proc.stdout or "[remote rejected]" in proc.stdout:
            log.info("state push refused: %s", first_error_line(proc))
            return False
        raise StateSyncError(f"cannot push to {shown(self.remote)}: {first_error_line(proc)}")

    def fetch(self) -> str | None:
        """The remote's state commit (fetched here, not taken), None if it has none."""
        listed = self._listed(REF)
        if REF not in listed:
            return None
        self._ok("fetch", "-q", "--no-tags", self.remote, f"+{REF}:{FETCHED}")
        tip = self._ref(FETCHED)
        if tip is None:
            raise UntrustedCommit(listed[REF], f"the remote's {REF} names no commit")
        return tip

    def pull(self, windows: Mapping[str, SignerWindow], max_epoch: int, *, now: float) -> Pulled:
        """Fetch, verify the new commits (at most MAX_NEW_COMMITS), then move the tree to
        the newest of them, merged with this machine's queued commits if it has any (the
        remote's side kept in a conflict). UntrustedCommit leaves the tree and the head
        where they were."""
        self._recover()
        head, tip = self.head(), self.fetch()
        if tip is None or tip == head or (head is not None and self._descends(tip, head)):
            return Pulled(head, 0)  # nothing new; what the head has beyond it is queued
        if head is None or self._descends(head, tip):
            commits, whole = self._verify(head, tip, windows, max_epoch)
            newest = tip if whole else self._newest_of(head, commits)
            self._move_to(head, newest)
            return Pulled(newest, len(commits), tuple(self.moved_aside))
        base = self._fork_point(head, tip)
        commits, whole = self._verify(base, tip, windows, max_epoch)
        newest = tip if whole else self._newest_of(base, commits)
        epoch = max(self._epoch(head), self._epoch(newest))
        message = "take the remote's state over the queued"
        conflicts = self._merge(newest, epoch=epoch, now=now, mine_wins=False, message=message)
        self._ok("update-ref", PUSHED, newest)
        if conflicts:
            log.warning("queued state changes lost to the remote's in %s", ", ".join(conflicts))
        return Pulled(self.head(), len(commits), tuple(conflicts))

    def absorb(
        self,
        windows: Mapping[str, SignerWindow],
        max_epoch: int,
        *,
        epoch: int,
        now: float,
        tip: str | None = None,
        message: str = "merge the remote's state",
    ) -> list[str]:
        """Verify commits the head lacks and merge them in, signed at ``epoch``: the
        remote's state (a late push of the holder before, when this holder's push was
        refused), or ``tip`` (a standby's queue). This holder's side is kept where both
        changed a file; those paths are returned. Never merges commits of a newer epoch:
        their holder is newer than this one."""
        head = self.head()
        if tip is None:
            tip = self.fetch()
            if head is not None and tip is not None:
                self._fork_point(head, tip)  # refuses a rewrite
        if head is None or tip is None or self._descends(tip, head):
            return []
        commits, whole = self._verify(head, tip, windows, max_epoch)
        if not whole:  # the verified part now (its last commit's history is in it): the rest later
            tip = commits[-1].sha
        for c in commits:  # a removed machine's commit new to the holder: never merged
            if windows[c.signer].before is not None:
                raise UntrustedCommit(c.sha, f"signed by {c.signer}, removed: not merged now")
        theirs = self._epoch(tip)
        if theirs > epoch:
            raise CommitAhead(tip, f"the remote is at epoch {theirs}, this holder at {epoch}")
        return self._merge(tip, epoch=epoch, now=now, mine_wins=True, message=message)

    # --- the queue -------------------------------------------------------------------

    def send_queue(self) -> str | None:
        """Send the head to this machine's queue if it has commits the remote's state
        lacks (a standby's own changes); the commit sent, None if none is new. Waits
        (None) while the queue holds one the holder has not taken and the head does not
        descend from, which only a repository made anew can meet: never dropped."""
        head, pushed = self.head(), self._own(PUSHED)
        if head is None or head == self._own(SENT):
            return None
        if pushed is not None and self._descends(head, pushed):
            return None
        ref = QUEUE + self.identity.machine_id
        there = self._listed(ref).get(ref, "")
        if there and not (
            self._has(there)
            and (self._descends(there, head) or (pushed and self._descends(there, pushed)))
        ):
            log.warning("this machine's queued state %s is not taken yet: waiting", there[:12])
            return None
        proc = self._git(
            "push",
            "--porcelain",
            f"--force-with-lease={ref}:{there}",
            *push_guard(self.remote),
            self.remote,
            f"+{head}:{ref}",
        )
        if proc.returncode != 0:
            why = first_error_line(proc)
            raise StateSyncError(f"cannot queue state on {shown(self.remote)}: {why}")
        self._ok("update-ref", SENT, head)
        return head

    def queued(self, windows: Mapping[str, SignerWindow]) -> dict[str, str]:
        """The queues on the remote of the active members but this one: {machine id: sha}.
        A queue of a removed machine, or of a name no member has, is not looked at."""
        queued = {}
        for ref, sha in self._listed(QUEUE + "*").items():
            who = ref.removeprefix(QUEUE)
            window = windows.get(who)
            if who != self.identity.machine_id and window is not None and window.before is None:
                queued[who] = sha
        return queued

    def take_queued(
        self,
        who: str,
        sha: str,
        windows: Mapping[str, SignerWindow],
        max_epoch: int,
        *,
        epoch: int,
        now: float,
    ) -> list[str] | None:
        """Verify machine ``who``'s queued commits and merge them in (absorb); the paths
        in conflict, None if the head has them already."""
        head = self.head()
        if head is None or (self._has(sha) and self._descends(sha, head)):
            return None
        self._ok("fetch", "-q", "--no-tags", self.remote, f"+{QUEUE}{who}:{TAKEN}{who}")
        tip = self._ref(TAKEN + who)
        if tip is None:
            raise UntrustedCommit(sha, f"the queue of {who} names no commit")
        if self._descends(tip, head):
            return None
        message = f"take the state queued on {who}"
        return self.absorb(windows, max_epoch, epoch=epoch, now=now, tip=tip, message=message)

    # --- moving the tree -------------------------------------------------------------

    def _fork_point(self, head: str, tip: str) -> str | None:
        """Where ``head`` and the remote's ``tip`` part (None: no common history, as when
        a standby's first change was made before its first pull). UntrustedCommit if
        ``tip`` does not descend from the last state known on the remote: a rewrite."""
        pushed = self._own(PUSHED)
        if pushed is not None and not self._descends(pushed, tip):
            raise UntrustedCommit(tip, f"rewrites history: it does not descend from {pushed[:12]}")
        proc = self._git("merge-base", head, tip)
        return (proc.stdout.strip() or None) if proc.returncode == 0 else None

    def _recover(self) -> None:
        """Undo what a stop cut short: a merge git left (older versions merged in the
        tree), and a commit made but not yet recorded as the head (HEAD moves only by
        baton's own steps, to its own or verified commits)."""
        if (self.git_dir / "MERGE_HEAD").exists():
            self._git("merge", "--abort")
            log.warning("undid a merge a stop cut short")
        made, head = self._own("HEAD"), self.head()
        if made is not None and made != head and (head is None or self._descends(head, made)):
            self._ok("update-ref", VERIFIED, made)
            log.warning("took up commit %s a stop cut short", made[:12])

    def _move_to(self, base: str | None, newest: str) -> None:
        """The tree and its refs to ``newest``; changes not committed are kept (git
        refuses a move that would overwrite one, and the tree stays)."""
        if base is None or self._own("HEAD") is None:
            self._ok("merge", "-q", "--ff-only", newest)
        else:
            self.moved_aside = self._clear_way(newest)
            self._ok("reset", "-q", "--keep", newest)
        self._ok("update-ref", VERIFIED, newest)
        self._ok("update-ref", PUSHED, newest)
