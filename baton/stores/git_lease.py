"""GitLeaseStore: the lease record in a commit on one ref of the mesh's git remote.

The record is ``lease.json`` in a parentless commit with fixed author, committer and
dates, so equal records make equal commits and a renewal replaces the ref instead of
growing a history. The commit id is the store's token. CAS is

    git push --porcelain --force-with-lease=<ref>:<expected> <remote> <commit>:<ref>

so the remote decides: it updates the ref only if it still points at ``expected``
(empty: only if the ref does not exist). A "[rejected] (stale info)" answer is a lost
CAS; no answer at all (unreachable remote, timeout, refused credentials) is a
LeaseStoreError, never a lost CAS. Git objects are written and read with GitPython in
a private bare repository in the machine's home; talking to the remote uses the git CLI
with a timeout, so a slow remote cannot hold the lease coordinator.

Any URL git understands works; ``git+`` in front of it (``git+file:///srv/mesh.git``,
``git+ssh://host/mesh.git``) marks it as a git lease store in config.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import time
from pathlib import Path

import git
from gitdb import IStream
from gitdb.db import LooseObjectDB

from baton.core.errors import ConfigError, LeaseStoreError
from baton.core.lease_record import LeaseRecord
from baton.core.lease_store import CasResult, Stored, decode_stored
from baton.stores.git_cli import first_error_line, run_git, shown

log = logging.getLogger("baton.lease")

REF = "refs/baton/lease"
FETCHED = "refs/baton/fetched-lease"
FILE = "lease.json"
IDENT = b"baton <baton@localhost> 0 +0000"
GC_EVERY = 2000  # writes between prunes of the private repository
_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def git_url(lease_store: str) -> str:
    """The git URL of a ``git+...`` lease-store setting."""
    if not lease_store.startswith("git+") or "://" not in lease_store:
        raise ConfigError("lease_store", f"{lease_store!r} is not a git+URL lease store")
    return lease_store[len("git+") :]


def _lost_race(status: str, stderr: str) -> bool:
    """A push refused because the ref was not at the expected commit: by our side
    ("stale info", seen in the advertisement) or by the remote's own locked compare."""
    if "[rejected] (stale info)" in status:
        return True
    moved = "but expected" in stderr or "reference already exists" in stderr
    return "[remote rejected]" in status and moved


def ensure_git_remote(lease_store: str) -> None:
    """Create the bare repository of a ``git+file://`` lease store if it is missing
    (private to this user); other URLs are the operator's to create."""
    url = git_url(lease_store)
    if not url.startswith("file://"):
        return
    path = Path(url[len("file://") :])
    if (path / "HEAD").exists():
        return
    if path.exists() and any(path.iterdir()):
        raise ConfigError("lease_store", f"{path} exists but is not a git repository")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    git.Repo.init(path, bare=True).close()


class GitLeaseStore:
    def __init__(self, url: str, workdir: Path, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        workdir.parent.mkdir(parents=True, exist_ok=True)
        self.repo = (
            git.Repo(workdir) if (workdir / "HEAD").exists() else git.Repo.init(workdir, bare=True)
        )
        self.workdir = workdir
        # a CAS writes its three objects here, in this process: `git hash-object` for
        # each took three of the eight processes a renewal started (tools/bench/lease_cas)
        self.objects = LooseObjectDB(str(workdir / "objects"))
        self.writes = 0
        # a lock older than any push of ours can run (timeout, then a second to die)
        self.stale_lock_s = max(5.0, 3 * timeout_s)

    def describe(self) -> str:
        return f"git {shown(self.url)} {REF}"

    def close(self) -> None:
        self.repo.close()

    # --- talking to the remote ------------------------------------------------------

    def _git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_git(
            list(args),
            cwd=self.workdir,
            timeout_s=self.timeout_s,
            error=lambda detail: LeaseStoreError(f"{detail} ({shown(self.url)})"),
        )

    def read(self) -> Stored:
        listed = self._git("ls-remote", "--refs", self.url, REF)
        if listed.returncode != 0:
            raise LeaseStoreError(f"cannot read {shown(self.url)}: {first_error_line(listed)}")
        if not listed.stdout.strip():
            return Stored(None)
        fetched = self._git("fetch", "-q", "--no-tags", self.url, f"+{REF}:{FETCHED}")
        if fetched.returncode != 0:
            why = first_error_line(fetched)
            raise LeaseStoreError(f"cannot fetch from {shown(self.url)}: {why}")
        return self._decode(self.repo.git.rev_parse(FETCHED))

    def cas(self, expected: str | None, new: LeaseRecord) -> CasResult:
        if expected is not None and not _COMMIT_ID.fullmatch(expected):
            return CasResult(False, self.read())  # not a commit id: it cannot match
        commit = self._commit(new)
        pushed = self._push(expected, commit)
        if pushed.returncode != 0 and "lease.lock': File exists" in pushed.stderr:
            self._clear_stale_lock()  # raises unless it removed one
            pushed = self._push(expected, commit)
        return self._outcome(expected, commit, new, pushed)

    def _clear_stale_lock(self) -> None:
        """A lock on the remote's ref that outlived every push baton makes (each ends
        within its timeout) was left by a killed git: on a file:// remote it is removed
        (and said so); elsewhere the operator is told where it is."""
        where = f"{REF}.lock"
        if not self.url.startswith("file://"):
            raise LeaseStoreError(f"{shown(self.url)}: the ref is locked ({where} exists)")
        lock = Path(self.url[len("file://") :]) / where
        with contextlib.suppress(FileNotFoundError):
            age = time.time() - lock.stat().st_mtime
            if age < self.stale_lock_s:
                raise LeaseStoreError(f"{lock} is held ({age:.1f} s old): another push runs")
            lock.unlink()
            log.warning("removed a stale lock %s (%.0f s old), left by a killed git", lock, age)

    def _push(self, expected: str | None, commit: str) -> subprocess.CompletedProcess[str]:
        return self._git(
            "push",
            "--porcelain",
            f"--force-with-lease={REF}:{expected or ''}",
            self.url,
            f"{commit}:{REF}",
        )

    def _outcome(
        self,
        expected: str | None,
        commit: str,
        new: LeaseRecord,
        pushed: subprocess.CompletedProcess[str],
    ) -> CasResult:
        status = [x for x in pushed.stdout.splitlines() if x.endswith(")") or "\t" in x]
        mine = [x for x in status if x.split("\t")[1:2] == [f"{commit}:{REF}"]]
        flag = mine[0][:1] if mine else ""
        # "=" (already there) is checked by git before the lease: it is our write only if
        # we expected it already, else the store holds it from an earlier write of ours
        if pushed.returncode == 0 and (
            flag in ("*", "+", " ") or (flag == "=" and expected == commit)
        ):
            return CasResult(True, Stored(commit, new))
        if pushed.returncode == 0 and flag == "=":
            return CasResult(False, self.read())
        if mine and mine[0].startswith("!") and _lost_race(mine[0], pushed.stderr):
            return CasResult(False, self.read())
        raise LeaseStoreError(f"cannot write to {shown(self.url)}: {first_error_line(pushed)}")

    # --- objects ---------------------------------------------------------------------

    def _store(self, kind: bytes, data: bytes) -> str:
        return str(self.objects.store(IStream(kind, len(data), io.BytesIO(data))).hexsha.decode())

    def _commit(self, record: LeaseRecord) -> str:
        self.writes += 1
        if self.writes % GC_EVERY == 0:  # before writing: the new objects are unreferenced
            self.repo.git.prune("--expire=now")
        blob = self._store(b"blob", record.encode())
        tree = self._store(b"tree", b"100644 " + FILE.encode() + b"\0" + bytes.fromhex(blob))
        message = f"lease epoch {record.epoch} nonce {record.nonce} held by {record.holder}\n"
        body = (
            b"tree " + tree.encode() + b"\nauthor " + IDENT + b"\ncommitter " + IDENT + b"\n\n"
        ) + message.encode()
        return self._store(b"commit", body)

    def _decode(self, token: str) -> Stored:
        """The record in commit ``token``; garbage if it is not exactly our shape."""
        try:
            commit = self.repo.commit(token)
            blob = commit.tree / FILE
            data = blob.data_stream.read()
        except (ValueError, KeyError, TypeError, git.GitError) as exc:
            return Stored(token, None, f"{REF} does not hold a lease commit: {exc!r:.200}")
        return decode_stored(token, data)
