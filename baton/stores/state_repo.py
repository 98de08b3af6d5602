"""StateRepo: the agent's state directory as a git working tree, its commits signed
with the machine's key (git's SSH signing) and every fetched commit verified before it
reaches the tree (StateSync; the rules are baton.core.state_trust).

Layout: the working tree is ``state/`` in the home; its git directory is
``data/state.git``, outside it, so the agent (which may write ``state/``) can never
write the repository's config or hooks, which git would run. Hooks are off whatever the
user's gitconfig says.

Refs in the git directory:
- ``refs/baton/verified-state``: the newest commit this machine verified (or made); the
  tree holds it. It only moves forward, to a descendant.
- ``refs/baton/fetched-state``: the remote's ref as last fetched, verified or not.
On the remote: ``refs/baton/state``, moved only by a fast-forward push (never forced).

Invariants:
- Nothing fetched reaches ``state/`` before ``judge`` passed every new commit; a tip
  that does not descend from the verified commit (a rewrite) is refused as a whole.
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
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from baton.core.errors import StateSyncError, UntrustedCommit
from baton.core.state_trust import EPOCH_TRAILER, CommitFacts, Pulled, SignerWindow, judge
from baton.stores.files import atomic_write, ensure_private_dir
from baton.stores.git_cli import first_error_line, run_git
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity

log = logging.getLogger("baton.state")

REF = "refs/baton/state"
FETCHED = "refs/baton/fetched-state"
VERIFIED = "refs/baton/verified-state"
BRANCH = "refs/heads/main"
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
        settings = [
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "gpg.format=ssh",
            "-c",
            f"gpg.ssh.allowedSignersFile={self.paths.allowed_signers}",
            "-c",
            f"user.signingKey={self.paths.state_signing_key}",
            "-c",
            f"user.name={self.identity.nickname}",
            "-c",
            f"user.email={self.identity.machine_id}@baton",
        ]
        return run_git(
            [*settings, *where, *args],
            cwd=self.paths.root,
            timeout_s=timeout_s or self.timeout_s,
            error=lambda detail: StateSyncError(f"{detail} ({self.remote})"),
            env=env,
        )

    def _ok(self, *args: str, **kw: object) -> str:
        proc = self._git(*args, **kw)  # type: ignore[arg-type]
        if proc.returncode != 0:
            raise StateSyncError(f"git {args[0]}: {first_error_line(proc)}")
        return proc.stdout

    def _ref(self, ref: str) -> str | None:
        proc = self._git("rev-parse", "-q", "--verify", f"{ref}^{{commit}}")
        return proc.stdout.strip() if proc.returncode == 0 else None

    # --- who may sign ----------------------------------------------------------------

    def set_signers(self, windows: Mapping[str, SignerWindow]) -> None:
        """Write the allowed-signers file git verifies with (one line per member)."""
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
        if self._git("diff", "--cached", "--quiet").returncode == 0:
            return None
        parent = self.head()
        when = math.floor(now)
        if parent is not None:
            when = max(when, int(self._ok("show", "-s", "--format=%ct", parent).strip()))
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
        assert made is not None
        self._ok("update-ref", VERIFIED, made)
        return made

    def push(self) -> bool:
        """Fast-forward the remote's ref to the verified commit; False if the remote has
        moved elsewhere (pull first). Never forced."""
        head = self.head()
        if head is None:
            return True
        proc = self._git("push", "--porcelain", self.remote, f"{head}:{REF}")
        if proc.returncode == 0:
            return True
        if "[rejected]" in proc.stdout or "[remote rejected]" in proc.stdout:
            log.info("state push refused: %s", first_error_line(proc))
            return False
        raise StateSyncError(f"cannot push to {self.remote}: {first_error_line(proc)}")

    # --- the standby's side ------------------------------------------------------------

    def fetch(self) -> str | None:
        """The remote's state commit (fetched here, not taken), None if it has none."""
        listed = self._git("ls-remote", "--refs", self.remote, REF)
        if listed.returncode != 0:
            raise StateSyncError(f"cannot read {self.remote}: {first_error_line(listed)}")
        if not listed.stdout.strip():
            return None
        self._ok("fetch", "-q", "--no-tags", self.remote, f"+{REF}:{FETCHED}")
        return self._ref(FETCHED)

    def pull(self, windows: Mapping[str, SignerWindow]) -> Pulled:
        """Fetch, verify every new commit, then move the tree to the remote's commit.
        UntrustedCommit leaves the tree and the verified commit where they were."""
        base = self.head()
        tip = self.fetch()
        if tip is None or tip == base:
            return Pulled(base, 0)
        if base is not None and self._git("merge-base", "--is-ancestor", base, tip).returncode != 0:
            raise UntrustedCommit(tip, f"rewrites history: it does not descend from {base[:12]}")
        self.set_signers(windows)
        new = self._facts(f"{base}..{tip}" if base else tip)
        missing = {p for c in new for p in c.parents} - {c.sha for c in new}
        known = {c.sha: c for c in self._facts("--no-walk", *missing)} if missing else {}
        judge(new, known, windows)
        self._ok("merge", "-q", "--ff-only", tip)
        self._ok("update-ref", VERIFIED, tip)
        return Pulled(tip, len(new))

    def _facts(self, *revs: str) -> list[CommitFacts]:
        """What git says about the commits of ``revs``, oldest first."""
        out = self._ok(
            "log",
            "-z",
            "--reverse",
            "--topo-order",
            f"--format={_FORMAT}",
            *revs,
            timeout_s=self.timeout_s * 6,
        )
        facts = []
        for record in filter(None, out.split("\0")):
            fields = record.split("\x1f", len(_FIELDS) - 1)
            if len(fields) != len(_FIELDS) or not _SHA.fullmatch(fields[0]):
                raise UntrustedCommit(fields[0][:40], "git cannot describe it")
            sha, parents, when, status, signer, epoch = fields
            facts.append(CommitFacts(sha, tuple(parents.split()), int(when), status, signer, epoch))
        return facts


def _stamp(when: int) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y%m%d%H%M%SZ")
