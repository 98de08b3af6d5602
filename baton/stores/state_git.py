"""StateGit: the git plumbing under StateRepo (StateSync): the repository of ``state/``
with its git directory outside the tree, every git run with a deadline and without the
user's configuration, the allowed-signers file, and the verification of new commits
(the rules are baton.core.state_trust).

Layout: the working tree is ``state/`` in the home; its git directory is
``data/state.git``, outside it, so the agent (which may write ``state/``) can never
write the repository's config or hooks, which git would run. Hooks are off, and the
user's and the system's gitconfig are not read (a ``log.showSignature`` or
``core.autocrlf`` there would change what baton reads or commits); a push to a file://
remote runs its receive-pack without the remote's hooks.

Invariants:
- ``verify`` judges at most MAX_NEW_COMMITS new commits, BATCH at a time, oldest first:
  a flood of commits costs bounded work, and the caller goes on from the verified part.
- Every git runs with a deadline (baton.stores.git_cli); a remote that cannot be reached
  is a StateSyncError, never a hang.
- A lock file git left behind (a machine that died mid-commit) is removed once it is
  older than STALE_LOCK_S, longer than any local step of git takes (add, commit, merge,
  reset: a git of a node that died before may still be finishing one); a younger one
  makes the step fail and a later tick retry. A push or a fetch locks nothing here
  but for the moment it updates a ref.
- Commits are signed with ``machine/state-signing.key`` (the machine's Ed25519 signing
  key in OpenSSH's form, 0600).
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import time
from collections.abc import Mapping
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from baton.core.errors import StateSyncError, UntrustedCommit
from baton.core.state_trust import EPOCH_TRAILER, CommitFacts, SignerWindow, judge
from baton.stores.files import atomic_write, ensure_private_dir
from baton.stores.git_cli import WITHOUT_USER_CONFIG, first_error_line, run_git, shown
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity

log = logging.getLogger("baton.state")

BRANCH = "refs/heads/main"
VERIFIED = "refs/baton/verified-state"  # the newest commit the tree holds, verified or made here
STALE_LOCK_S = 30.0
_LOCKS = (
    "index.lock",
    "baton-merge.index.lock",
    "HEAD.lock",
    "packed-refs.lock",
    "config.lock",
    "refs/**/*.lock",
)
MIN_GIT = (2, 38)  # merge-tree --write-tree
MAX_NEW_COMMITS = 1000
BATCH = 100
SHA = re.compile(r"[0-9a-f]{40}")
_FIELDS = (
    "%H",
    "%P",
    "%ct",
    "%G?",
    "%GS",
    f"%(trailers:key={EPOCH_TRAILER},valueonly,separator=%x2c)",
)
_FORMAT = "%x1f".join(_FIELDS)


class StateGit:
    def __init__(
        self, paths: HomePaths, identity: MachineIdentity, remote: str, timeout_s: float = 10.0
    ) -> None:
        self.paths = paths
        self.identity = identity
        self.remote = remote
        self.timeout_s = timeout_s
        self.tree = paths.state_dir
        self.git_dir = paths.state_git
        # what the last commit left out of the tree (files too big, git repositories of
        # their own, files git cannot read): never committed, never moved over
        self.too_big: list[str] = []
        self.nested: list[str] = []
        self.unreadable: list[str] = []
        self.moved_aside: list[str] = []  # what the last move set aside (NAME.local-TIME)
        self._check_git()
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

    def _check_git(self) -> None:
        out = self._git("version", bare=True).stdout
        found = re.search(r"(\d+)\.(\d+)", out)
        if found is None or (int(found[1]), int(found[2])) < MIN_GIT:
            need = ".".join(map(str, MIN_GIT))
            raise StateSyncError(f"state sync needs git {need} or later; this is {out.strip()!r}")

    def head(self) -> str | None:
        """The newest verified commit (the tree holds it), None before the first."""
        return self._own(VERIFIED)

    def _own(self, ref: str) -> str | None:
        """One of baton's own refs (or HEAD), read from the git directory without
        running git (several a tick): a loose ref, else packed-refs. Only ever a
        commit baton made or verified; a remote's refs go through ``_ref``."""
        try:
            text = (self.git_dir / ref).read_text("ascii").strip()
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError):
            return self._ref(ref)  # not what git writes: let git say
        if text.startswith("ref: "):
            return self._own(text[5:])
        if SHA.fullmatch(text):
            return text
        packed = self.git_dir / "packed-refs"
        if not text and packed.exists():
            for line in packed.read_text("ascii", "replace").splitlines():
                sha, _, name = line.partition(" ")
                if name == ref and SHA.fullmatch(sha):
                    return sha
        return None if not text else self._ref(ref)

    def _made(self) -> str:
        """Record the commit HEAD names (made here) as the head."""
        made = self._own("HEAD")
        if made is None:
            raise StateSyncError("git made no commit")
        self._ok("update-ref", VERIFIED, made)
        return made

    def clear_stale_locks(self, now: float | None = None) -> list[str]:
        """Remove the lock files older than STALE_LOCK_S; the ones removed."""
        now = time.time() if now is None else now
        removed = []
        for lock in (p for pattern in _LOCKS for p in self.git_dir.glob(pattern)):
            with contextlib.suppress(OSError):
                if now - lock.lstat().st_mtime > STALE_LOCK_S:
                    lock.unlink()
                    removed.append(str(lock.relative_to(self.git_dir)))
        if removed:
            log.warning("removed git's lock files left by a stop mid-step: %s", ", ".join(removed))
        return removed

    def _git(
        self,
        *args: str,
        bare: bool = False,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        input: str | None = None,
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
            input=input,
        )

    def _ok(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        input: str | None = None,
    ) -> str:
        proc = self._git(*args, env=env, timeout_s=timeout_s, input=input)
        if proc.returncode != 0:
            raise StateSyncError(f"git {args[0]}: {first_error_line(proc)}")
        return proc.stdout

    def _ref(self, ref: str) -> str | None:
        proc = self._git("rev-parse", "-q", "--verify", f"{ref}^{{commit}}")
        return proc.stdout.strip() if proc.returncode == 0 else None

    def _descends(self, ancestor: str, tip: str) -> bool:
        return self._git("merge-base", "--is-ancestor", ancestor, tip).returncode == 0

    def _has(self, sha: str) -> bool:
        return self._git("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0

    def _time(self, sha: str) -> int:
        return int(self._ok("show", "-s", "--format=%ct", sha).strip())

    def _epoch(self, sha: str | None) -> int:
        return 0 if sha is None else (self._facts([sha])[0].epoch or 0)

    def _listed(self, *refs: str) -> dict[str, str]:
        """The remote's refs matching ``refs`` (globs allowed): {ref: sha}."""
        listed = self._git("ls-remote", "--refs", self.remote, *refs)
        if listed.returncode != 0:
            why = first_error_line(listed)
            raise StateSyncError(f"cannot read {shown(self.remote)}: {why}")
        pairs = (line.split("\t", 1) for line in listed.stdout.splitlines() if "\t" in line)
        return {ref: sha for sha, ref in pairs if SHA.fullmatch(sha)}

    # --- who may sign, and what they signed ---------------------------------------------

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

    def _verify(
        self, base: str | None, tip: str, windows: Mapping[str, SignerWindow], max_epoch: int
    ) -> tuple[list[CommitFacts], bool]:
        """Judge the commits of ``tip`` that ``base`` lacks, oldest first, BATCH at a time,
        at most MAX_NEW_COMMITS; (those verified, whether that was all of them). Their
        parents outside that set are in ``base``'s history: verified already."""
        self.set_signers(windows)
        listed = self._ok(
            "rev-list", "--reverse", "--topo-order", f"{base}..{tip}" if base else tip
        )
        everything = listed.split()
        shas = everything[:MAX_NEW_COMMITS]
        known: dict[str, CommitFacts] = {}
        judged: list[CommitFacts] = []
        for start in range(0, len(shas), BATCH):
            batch = self._facts(shas[start : start + BATCH])
            missing = {p for c in batch for p in c.parents} - {c.sha for c in batch} - set(known)
            known |= {c.sha: c for c in self._facts(sorted(missing))} if missing else {}
            judge(batch, known, windows, max_epoch)
            known |= {c.sha: c for c in batch}
            judged += batch
        return judged, len(shas) == len(everything)

    def _newest_of(self, base: str | None, commits: list[CommitFacts]) -> str:
        """The last of a capped prefix of new commits that descends from ``base`` (the
        tree moves forward only; the rest is verified again next time)."""
        for sha in reversed([c.sha for c in commits]):
            if base is None or self._descends(base, sha):
                return sha
        raise StateSyncError(f"none of {len(commits)} new state commits descends from {base}")

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
            if len(fields) != len(_FIELDS) or not SHA.fullmatch(fields[0]):
                raise UntrustedCommit(fields[0][:40], "git cannot describe it")
            sha, parents, when, status, signer, epoch = fields
            facts.append(CommitFacts(sha, tuple(parents.split()), int(when), status, signer, epoch))
        if [f.sha for f in facts] != shas:
            raise UntrustedCommit(shas[0], "git described other commits than asked")
        return facts


def _stamp(when: int) -> str:
    return datetime.fromtimestamp(when).strftime("%Y%m%d%H%M%S")
