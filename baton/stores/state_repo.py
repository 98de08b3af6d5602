"""StateRepo: the agent's state directory as a git working tree, its commits signed
with the machine's key (git's SSH signing) and every fetched commit verified before it
reaches the tree (StateSync; the rules are baton.core.state_trust).

Layout: the working tree is ``state/`` in the home; its git directory is
``data/state.git``, outside it, so the agent (which may write ``state/``) can never
write the repository's config or hooks, which git would run. Hooks are off, and the
user's and the system's gitconfig are not read (a ``log.showSignature`` or
``core.autocrlf`` there would change what baton reads or commits); a push to a file://
remote runs its receive-pack without the remote's hooks.

Refs in the git directory:
- ``refs/baton/verified-state``: the newest commit this machine verified (or made); the
  tree holds it.
- ``refs/baton/pushed-state``: the newest commit known to be on the remote (pushed by
  this machine, or pulled from it).
- ``refs/baton/fetched-state``: the remote's ref as last fetched, verified or not.
- ``refs/baton/unpushed/<sha>``: commits this machine made that the remote never took
  (a push lost in a failover): kept, never lost, and left behind.
On the remote: ``refs/baton/state``, moved only by a fast-forward push (never forced).

Invariants:
- Nothing fetched reaches ``state/`` before ``judge`` passed every new commit; a tip
  that descends neither from the verified commit nor from the last one the remote had
  (a rewrite) is refused as a whole.
- A pull takes at most MAX_NEW_COMMITS new commits, verified BATCH at a time, oldest
  first: a flood of commits costs bounded work per pull, and the next pull goes on.
- Commits are made at ``max(now, parent's time)`` with the holder's lease epoch in a
  ``Baton-Epoch`` trailer, signed with ``machine/state-signing.key`` (the machine's
  Ed25519 signing key in OpenSSH's form, 0600).
- Every git runs with a deadline (baton.stores.git_cli); a remote that cannot be reached
  is a StateSyncError, never a hang.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from collections.abc import Mapping
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from baton.core.errors import CommitAhead, StateSyncError, UntrustedCommit
from baton.core.state_trust import EPOCH_TRAILER, CommitFacts, Pulled, SignerWindow, judge
from baton.stores.files import atomic_write, ensure_private_dir
from baton.stores.git_cli import (
    WITHOUT_USER_CONFIG,
    first_error_line,
    push_guard,
    run_git,
    shown,
)
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity

log = logging.getLogger("baton.state")

REF = "refs/baton/state"
FETCHED = "refs/baton/fetched-state"
VERIFIED = "refs/baton/verified-state"
PUSHED = "refs/baton/pushed-state"
UNPUSHED = "refs/baton/unpushed/"
BRANCH = "refs/heads/main"
MAX_NEW_COMMITS = 1000
BATCH = 100
_SHA = re.compile(r"[0-9a-f]{40}")
_FIELDS = (
    "%H",
    "%P",
    "%ct",
    "%G?",
    "%GS",
    f"%(trailers:key={EPOCH_TRAILER},valueonly,separator=%x2c)",
)
_FORMAT = "%x1f".join(_FIELDS)


class StateRepo:
    def __init__(
        self, paths: HomePaths, identity: MachineIdentity, remote: str, timeout_s: float = 10.0
    ) -> None:
        self.paths = paths
        self.identity = identity
        self.remote = remote
        self.timeout_s = timeout_s
        self.tree = paths.state_dir
        self.git_dir = paths.state_git
        self.nested: list[str] = []  # git repositories of their own in the tree: not synced
        ensure_private_dir(self.tree)
        ensure_private_dir(paths.data_dir)
        if not (self.git_dir / "HEAD").exists():
            self._git("init", "-q", "--bare", str(self.git_dir), bare=True)
            self._git("config", "core.bare", "false")
            self._git("symbolic-ref", "HEAD", BRANCH)
        if not paths.state_signing_key.exists():
            seed = bytes(identity.signing_key)
            key = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            atomic_write(paths.state_signing_key, key)
        if not paths.allowed_signers.exists():
            atomic_write(paths.allowed_signers, b"")

    # --- git ---------------------------------------------------------------------------

    def _git(
        self,
        *args: str,
        bare: bool = False,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        where = [] if bare else [f"--git-dir={self.git_dir}", f"--work-tree={self.tree}"]
        settings = {
            "core.hooksPath": "/dev/null",
            "gpg.format": "ssh",
            "gpg.ssh.allowedSignersFile": str(self.paths.allowed_signers),
            "user.signingKey": str(self.paths.state_signing_key),
            "user.name": self.identity.nickname,
            "user.email": f"{self.identity.machine_id}@baton",
        }
        options = [x for k, v in settings.items() for x in ("-c", f"{k}={v}")]
        return run_git(
            [*options, *where, *args],
            cwd=self.paths.root,
            timeout_s=timeout_s or self.timeout_s,
            error=lambda detail: StateSyncError(f"{detail} ({shown(self.remote)})"),
            env={**WITHOUT_USER_CONFIG, **(env or {})},
        )

    def _ok(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float | None = None
    ) -> str:
        proc = self._git(*args, env=env, timeout_s=timeout_s)
        if proc.returncode != 0:
            raise StateSyncError(f"git {args[0]}: {first_error_line(proc)}")
        return proc.stdout

    def _ref(self, ref: str) -> str | None:
        proc = self._git("rev-parse", "-q", "--verify", f"{ref}^{{commit}}")
        return proc.stdout.strip() if proc.returncode == 0 else None

    def _descends(self, ancestor: str, tip: str) -> bool:
        return self._git("merge-base", "--is-ancestor", ancestor, tip).returncode == 0

    # --- who may sign ----------------------------------------------------------------

    def set_signers(self, windows: Mapping[str, SignerWindow]) -> None:
        """Write the allowed-signers file git verifies with (one line per member). Times
        are local, without a zone letter, which every OpenSSH since 8.8 reads alike."""
        lines = []
        for w in sorted(windows.values(), key=lambda w: w.principal):
            options = f'namespaces="git",valid-after="{_stamp(w.after)}"'
            if w.before is not None:
                options += f',valid-before="{_stamp(w.before)}"'
            lines.append(f"{w.principal} {options} {w.key}\n")
        atomic_write(self.paths.allowed_signers, "".join(lines).encode())

    # --- the holder's side -------------------------------------------------------------

    def head(self) -> str | None:
        """The newest verified commit (the tree holds it), None before the first."""
        return self._ref(VERIFIED)

    def commit(self, *, epoch: int, now: float, message: str) -> str | None:
        """Commit every change in the tree, signed; None if nothing changed."""
        self._ok("add", "-A")
        staged = self._ok("ls-files", "-s", "-z")
        self.nested = [e.split("\t", 1)[1] for e in staged.split("\0") if e.startswith("160000")]
        if self._git("diff", "--cached", "--quiet").returncode == 0:
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
            "-m",
            f"{message}\n\n{EPOCH_TRAILER}: {epoch}\n",
            env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )
        made = self._ref("HEAD")
        if made is None:
            raise StateSyncError("git commit made no commit")
        self._ok("update-ref", VERIFIED, made)
        return made

    def push(self) -> bool:
        """Fast-forward the remote's ref to the verified commit; False if the remote has
        moved elsewhere (pull first). Never forced."""
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

    # --- the standby's side ------------------------------------------------------------

    def fetch(self) -> str | None:
        """The remote's state commit (fetched here, not taken), None if it has none."""
        listed = self._git("ls-remote", "--refs", self.remote, REF)
        if listed.returncode != 0:
            why = first_error_line(listed)
            raise StateSyncError(f"cannot read {shown(self.remote)}: {why}")
        if not listed.stdout.strip():
            return None
        self._ok("fetch", "-q", "--no-tags", self.remote, f"+{REF}:{FETCHED}")
        tip = self._ref(FETCHED)
        if tip is None:
            named = listed.stdout.split()[0][:40]
            raise UntrustedCommit(named, f"the remote's {REF} names no commit")
        return tip

    def pull(self, windows: Mapping[str, SignerWindow], max_epoch: int) -> Pulled:
        """Fetch, verify the new commits (at most MAX_NEW_COMMITS), then move the tree to
        the newest of them. UntrustedCommit leaves the tree and the verified commit where
        they were. Commits of this machine the remote never took are kept aside."""
        base = self.head()
        tip = self.fetch()
        if tip is None or tip == base:
            return Pulled(base, 0)
        if base is not None and not self._descends(base, tip):
            base = self._set_aside(base, tip)
        shas, whole = self._verify(base, tip, windows, max_epoch)
        newest = tip if whole else self._newest_of(base, shas)
        self._move_to(base, newest)
        return Pulled(newest, len(shas))

    def _verify(
        self, base: str | None, tip: str, windows: Mapping[str, SignerWindow], max_epoch: int
    ) -> tuple[list[str], bool]:
        """Judge the commits of ``tip`` that ``base`` lacks, oldest first, BATCH at a time,
        at most MAX_NEW_COMMITS; (those verified, whether that was all of them)."""
        self.set_signers(windows)
        listed = self._ok(
            "rev-list", "--reverse", "--topo-order", f"{base}..{tip}" if base else tip
        )
        everything = listed.split()
        shas = everything[:MAX_NEW_COMMITS]
        known: dict[str, CommitFacts] = {}
        for start in range(0, len(shas), BATCH):
            batch = self._facts(shas[start : start + BATCH])
            missing = {p for c in batch for p in c.parents} - {c.sha for c in batch} - set(known)
            known |= {c.sha: c for c in self._facts(sorted(missing))} if missing else {}
            judge(batch, known, windows, max_epoch)
            known |= {c.sha: c for c in batch}
        return shas, len(shas) == len(everything)

    def absorb(
        self, windows: Mapping[str, SignerWindow], max_epoch: int, *, epoch: int, now: float
    ) -> list[str]:
        """The holder's push was refused: the remote has commits its head lacks (a late
        push of the holder before it). Verify them and merge them in, signed at
        ``epoch``: theirs where they do not conflict, ours where they do (whole files
        when git cannot merge them); the paths in conflict are returned (their side
        stays in the history: nothing is lost). The
        next push then fast-forwards. Never merges a remote of a newer epoch: that holder
        is newer than this one."""
        head, tip = self.head(), self.fetch()
        if head is None or tip is None or self._descends(tip, head):
            return []
        shas, whole = self._verify(head, tip, windows, max_epoch)
        if not whole:
            raise StateSyncError(f"{len(shas)}+ commits to merge: more than one merge takes")
        theirs = max((c.epoch or 0) for c in self._facts([tip]))
        if theirs > epoch:
            raise CommitAhead(tip, f"the remote is at epoch {theirs}, this holder at {epoch}")
        when = max(math.floor(now), *(self._time(c) for c in (head, tip)))
        message = f"merge the remote's state\n\n{EPOCH_TRAILER}: {epoch}\n"
        dates = {"GIT_AUTHOR_DATE": f"{when} +0000", "GIT_COMMITTER_DATE": f"{when} +0000"}
        merge = ("merge", "-q", "--no-ff", "--no-verify", "-S", "-m", message)
        conflicts: list[str] = []
        if self._git(*merge, tip, env=dates).returncode != 0:
            conflicts = self._ok("diff", "--name-only", "--diff-filter=U", "-z").split("\0")
            conflicts = [c for c in conflicts if c]
            self._git("merge", "--abort")
            # theirs everywhere but the conflicting hunks; if git cannot (a file one side
            # deleted), ours whole: theirs stays in the history either way
            if self._git(*merge, "-X", "ours", tip, env=dates).returncode != 0:
                self._git("merge", "--abort")
                self._ok(*merge, "-s", "ours", tip, env=dates)
        made = self._ref("HEAD")
        if made is None:
            raise StateSyncError("git merge made no commit")
        self._ok("update-ref", VERIFIED, made)
        return conflicts

    def _time(self, sha: str) -> int:
        return int(self._ok("show", "-s", "--format=%ct", sha).strip())

    def _newest_of(self, base: str | None, shas: list[str]) -> str:
        """The last of a capped prefix of new commits that descends from ``base`` (the
        tree moves forward only; the rest is verified again by the next pull)."""
        for sha in reversed(shas):
            if base is None or self._descends(base, sha):
                return sha
        raise StateSyncError(f"none of {len(shas)} new state commits descends from {base}")

    def _set_aside(self, base: str, tip: str) -> str:
        """``base`` is not in the remote's history. If the last commit the remote had is,
        ``base``'s commits since were never taken (a push lost in a failover): keep them
        under UNPUSHED and go on from there. Else the remote rewrote its history."""
        pushed = self._ref(PUSHED)
        if pushed is None or not self._descends(pushed, tip) or not self._descends(pushed, base):
            raise UntrustedCommit(tip, f"rewrites history: it does not descend from {base[:12]}")
        self._ok("update-ref", UNPUSHED + base, base)
        log.warning(
            "state commits up to %s never reached the remote; kept at %s%s, taking the remote's",
            base[:12],
            UNPUSHED,
            base,
        )
        return pushed

    def _move_to(self, base: str | None, newest: str) -> None:
        """The tree and its refs to ``newest``; changes not committed are kept (git
        refuses a move that would overwrite one, and the tree stays)."""
        if base is None or self._ref("HEAD") is None:
            self._ok("merge", "-q", "--ff-only", newest)
        else:
            self._ok("reset", "-q", "--keep", newest)
        self._ok("update-ref", VERIFIED, newest)
        self._ok("update-ref", PUSHED, newest)

    def _facts(self, shas: list[str]) -> list[CommitFacts]:
        """What git says about ``shas``, in that order."""
        out = self._ok(
            "log",
            "-z",
            "--no-show-signature",
            "--no-walk=unsorted",
            f"--format={_FORMAT}",
            *shas,
            timeout_s=self.timeout_s * 3,
        )
        facts = []
        for record in filter(None, out.split("\0")):
            fields = record.split("\x1f", len(_FIELDS) - 1)
            if len(fields) != len(_FIELDS) or not _SHA.fullmatch(fields[0]):
                raise UntrustedCommit(fields[0][:40], "git cannot describe it")
            sha, parents, when, status, signer, epoch = fields
            facts.append(CommitFacts(sha, tuple(parents.split()), int(when), status, signer, epoch))
        if [f.sha for f in facts] != shas:
            raise UntrustedCommit(shas[0], "git described other commits than asked")
        return facts


def _stamp(when: int) -> str:
    return datetime.fromtimestamp(when).strftime("%Y%m%d%H%M%S")
