"""Which state commits a machine may take (StateSync): pure rules over what the
registry says and what git reports about each commit.

A commit of the agent's state reaches a working tree only if every commit between the
last verified one and it passes, oldest first:
- **signed by a member**: git checked the SSH signature against the allowed signers
  (``%G?`` is ``G``) and names the principal, a machine id;
- **within that member's window**: committed at or after the machine joined and before
  it was revoked (git checks this too, against the same windows; checked again here
  against the registry itself, not a file on disk);
- **in order**: its commit time and its lease epoch (the ``Baton-Epoch`` trailer) are
  not below any parent's. An honest holder commits at ``max(now, parent's time)``, so
  clocks that disagree cost nothing; a removed machine cannot date a commit before its
  removal once a member has committed after it.

Invariants:
- ``judge`` returns only if every commit passes; otherwise it raises UntrustedCommit
  naming the first that does not, and the caller keeps its tree where it was.
- History is never rewritten: the caller refuses a tip that does not descend from the
  last verified commit before asking anything here (``judge`` sees only new commits).
"""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from baton.core.errors import CommitAhead, UntrustedCommit
from baton.core.registry import MachineEntry

EPOCH_TRAILER = "Baton-Epoch"
_EPOCH = re.compile(r"[0-9]{1,18}")
_KEY_TYPE = b"ssh-ed25519"


def ssh_public_key(raw: bytes) -> str:
    """An Ed25519 public key in OpenSSH's one-line form (``ssh-ed25519 AAAA...``)."""
    blob = struct.pack(">I", len(_KEY_TYPE)) + _KEY_TYPE + struct.pack(">I", len(raw)) + raw
    return f"{_KEY_TYPE.decode()} {base64.b64encode(blob).decode()}"


@dataclass(frozen=True)
class SignerWindow:
    """A member's state-signing key and the times (whole seconds, UTC) it may sign
    in: from ``after`` on, and before ``before`` when the machine was revoked."""

    principal: str  # the machine id
    key: str  # OpenSSH form
    after: int
    before: int | None

    def covers(self, when: int) -> bool:
        return self.after <= when and (self.before is None or when < self.before)


def signer_windows(entries: Iterable[MachineEntry]) -> dict[str, SignerWindow]:
    """Every machine the registry knows, active or revoked, with its window. A revoked
    machine's window ends at its revocation (commits it made before stay good)."""
    return {
        e.machine_id: SignerWindow(
            principal=e.machine_id,
            key=ssh_public_key(e.identity.signing_public),
            after=math.floor(e.added_at),
            before=None if e.revoked_at is None else math.floor(e.revoked_at),
        )
        for e in entries
    }


@dataclass(frozen=True)
class CommitFacts:
    """What git says about one commit."""

    sha: str
    parents: tuple[str, ...]
    committed_at: int  # committer time, seconds since the epoch
    status: str  # git's %G?: G good, B bad, U unknown signer, N none, E cannot check, ...
    signer: str  # git's %GS: the allowed-signers principal, when status is G
    epoch_trailer: str  # the Baton-Epoch trailers' values, comma-separated

    @property
    def epoch(self) -> int | None:
        """The lease epoch it was made in: exactly one trailer, digits only."""
        return int(self.epoch_trailer) if _EPOCH.fullmatch(self.epoch_trailer) else None


_STATUS_WORDS = {
    "N": "not signed",
    "B": "its signature does not verify",
    "U": "signed by a key that is not a member's at the commit's time",
    "E": "its signature cannot be checked",
}


def judge(
    new: Sequence[CommitFacts],
    known: Mapping[str, CommitFacts],
    windows: Mapping[str, SignerWindow],
    max_epoch: int,
) -> None:
    """Raise UntrustedCommit for the first of ``new`` (oldest first) that may not be
    taken; ``known`` holds already verified commits their parents may be. A commit of an
    epoch above ``max_epoch`` (the highest lease epoch this machine knows) is CommitAhead:
    not taken yet (a holder it has not heard of, or a number made up to block every
    honest commit after it)."""
    seen = dict(known)
    for commit in new:
        _check_signature(commit, windows)
        _check_order(commit, seen)
        if (commit.epoch or 0) > max_epoch:
            raise CommitAhead(
                commit.sha, f"epoch {commit.epoch} is above the highest known here ({max_epoch})"
            )
        seen[commit.sha] = commit


def _check_signature(commit: CommitFacts, windows: Mapping[str, SignerWindow]) -> None:
    if commit.status != "G":
        reason = _STATUS_WORDS.get(commit.status, f"signature status {commit.status!r}")
        raise UntrustedCommit(commit.sha, reason)
    window = windows.get(commit.signer)
    if window is None:
        raise UntrustedCommit(commit.sha, f"signed by {commit.signer!r}, not a mesh member")
    if not window.covers(commit.committed_at):
        when = "before it joined" if commit.committed_at < window.after else "after its removal"
        raise UntrustedCommit(commit.sha, f"signed by {commit.signer} {when}")


def _check_order(commit: CommitFacts, seen: Mapping[str, CommitFacts]) -> None:
    epoch = commit.epoch
    if epoch is None:
        raise UntrustedCommit(commit.sha, f"no single {EPOCH_TRAILER} trailer")
    for sha in commit.parents:
        parent = seen.get(sha)
        if parent is None:
            raise UntrustedCommit(commit.sha, f"its parent {sha[:12]} was never verified")
        if commit.committed_at < parent.committed_at:
            raise UntrustedCommit(commit.sha, "dated before its parent")
        if epoch < (parent.epoch or 0):
            raise UntrustedCommit(commit.sha, f"epoch {epoch} below its parent's {parent.epoch}")


@dataclass(frozen=True)
class Pulled:
    """The outcome of a pull: the commit the tree holds, how many new commits were
    verified and taken to get there, and the paths where the remote's side was kept
    over this machine's queued changes."""

    head: str | None
    taken: int
    conflicts: tuple[str, ...] = ()


class StateStore(Protocol):
    """The port StateSyncActor works through (baton.stores.state_repo.StateRepo)."""

    nested: list[str]  # after commit(): paths in the tree that are git repositories
    too_big: list[str]  # after commit(): files too large to sync
    unreadable: list[str]  # after commit(): files git cannot read

    def head(self) -> str | None:
        """The newest verified commit, which the tree holds."""

    def commit(
        self, *, epoch: int | None, now: float, message: str, empty: bool = False
    ) -> str | None:
        """Commit every change in the tree, signed (epoch None: the head's); None if
        nothing changed."""

    def open_epoch(self, epoch: int, now: float) -> str | None:
        """A new holder's first commit of ``epoch`` (empty if nothing changed)."""

    def mark_removals(
        self, windows: Mapping[str, SignerWindow], epoch: int, now: float
    ) -> str | None:
        """A commit dated after the newest removal, unless the head is that late."""

    def push(self) -> bool:
        """Fast-forward the remote to head(); False if the remote moved elsewhere."""

    def pull(self, windows: Mapping[str, SignerWindow], max_epoch: int, *, now: float) -> Pulled:
        """Fetch, verify every new commit (UntrustedCommit if one fails), take them."""

    def absorb(
        self, windows: Mapping[str, SignerWindow], max_epoch: int, *, epoch: int, now: float
    ) -> list[str]:
        """Verify the remote's commits head() lacks and merge them in; the paths in
        conflict (this holder's side kept)."""

    def send_queue(self) -> str | None:
        """Send a standby's own commits to its queue on the remote; the one sent."""

    def queued(self, windows: Mapping[str, SignerWindow]) -> dict[str, str]:
        """The other active members' queues on the remote: {machine id: sha}."""

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
        """Verify a member's queued commits and merge them in; the paths in conflict
        (this holder's side kept), None if taken before."""
