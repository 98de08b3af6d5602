"""StateSyncActor: the agent's state directory follows the awake role (StateSync).

Every ``interval_ms`` (on its Tick):
- **holding**: after a pull when it has just become the holder (a new holder starts
  from the newest verified state), it commits whatever changed in the tree, signed and
  stamped with its epoch, and fast-forwards the remote to it. A push the remote refuses
  (an older holder's late push landed first) is never forced: the remote's commits are
  verified and merged in (theirs where they do not conflict, ours where they do, the
  paths named: ``state.conflicts``), and the merge is pushed.
- **standby**: it pulls: every new commit is verified (baton.core.state_trust) before
  the tree moves; a refused one leaves the tree where it was, counted and alarmed. A
  commit of an epoch above the highest it has heard of waits (``state.ahead``, no
  alarm): the lease's news of that holder comes soon, or it was made up.

``Flush`` (asked by the node before the holder releases its lease) commits and pushes
at once, so a planned stop or handoff carries the last turns' changes.

Invariants:
- Only a holder commits or pushes, and only with the epoch it holds.
- The tree moves only to a verified descendant of what it held, or, when the remote
  never took this machine's last commits (kept aside), of the last commit it had.
- A failure of the store, even one no BatonError names, is counted and logged (a new
  kind or refused commit at once, repeats once a minute) and never stops the actor:
  the next tick tries again.
- A git repository of its own inside the tree is not synced: named and counted
  (``state.nested``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pykka

from baton.actors.messages import Tick
from baton.adapters.metrics import Counters
from baton.core.clock import Clock
from baton.core.errors import BatonError, CommitAhead, UntrustedCommit
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.state_trust import SignerWindow, StateStore

log = logging.getLogger("baton.state")

REPEAT_LOG_MS = 60_000


@dataclass(frozen=True)
class Flush:
    """Commit and push now (a holder's last changes before it lets go)."""


class StateView:
    """What status shows of the state, as of the actor's last step: read from any
    thread without asking the actor (a pull may keep it busy for seconds)."""

    def __init__(self, remote: str) -> None:
        self.current: dict[str, Any] = {
            "remote": remote,
            "head": None,
            "pushed": None,
            "refused": None,
        }


class StateSyncActor(pykka.ThreadingActor):
    def __init__(
        self,
        store: StateStore,
        *,
        signers: Callable[[], Mapping[str, SignerWindow]],
        clock: Clock,
        counters: Counters,
        interval_ms: int,
        view: StateView,
    ) -> None:
        super().__init__()
        self.store = store
        self.view = view
        self.signers = signers
        self.clock = clock
        self.counters = counters
        self.interval_ms = interval_ms
        self.phase = Phase.STANDBY
        self.epoch = 0
        self.highest_epoch = 0  # the highest lease epoch heard of: no commit above it
        self.due_ms = 0.0
        self.must_pull = True
        self.pushed: str | None = None
        self.refused: dict[str, str] | None = None
        self.conflicts: list[str] = []  # of the last merge of the remote's commits
        self.logged: dict[str, tuple[str, float]] = {}

    def on_start(self) -> None:
        self._show()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick):
            if message.now_ms >= self.due_ms:
                self.due_ms = message.now_ms + self.interval_ms
                self._guarded(self._sync)
        elif isinstance(message, LeaseChanged):
            if message.phase is Phase.HOLDING and self.phase is not Phase.HOLDING:
                self.must_pull, self.due_ms = True, 0.0  # at the next tick
            self.phase, self.epoch = message.phase, message.epoch
            self.highest_epoch = max(self.highest_epoch, message.epoch)
        elif isinstance(message, Flush) and self.phase is Phase.HOLDING:
            self._guarded(self._commit_and_push)
        return None

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run ``step``, then show the outcome. A failure nobody foresaw (git saying
        something unexpected) is counted and logged like a store that is down: the
        actor lives on, and the next tick tries again."""
        try:
            step()
        except Exception as exc:
            self.counters.inc("state.unavailable")
            self._warn("unexpected", type(exc).__name__, f"state sync failed: {exc!r:.300}")
        self._show()

    def _show(self) -> None:
        try:
            head = self.store.head()
        except BatonError:
            head = None
        self.view.current = {
            **self.view.current,
            "head": head,
            "pushed": self.pushed,
            "refused": self.refused,
            "conflicts": self.conflicts,
        }

    def _sync(self) -> None:
        if self.phase is not Phase.HOLDING:
            self._pull()
            return
        if self.must_pull:
            self.must_pull = not self._pull()
        self._commit_and_push()

    def _pull(self) -> bool:
        """Take the remote's new verified commits; True unless the store failed."""
        try:
            pulled = self.store.pull(self.signers(), self.highest_epoch)
        except CommitAhead as exc:  # a holder not heard of yet: not taken, not an alarm
            self.counters.inc("state.ahead")
            log.info("not taking state commit %s yet: %s", exc.sha[:12], exc.reason)
            return True
        except UntrustedCommit as exc:
            self.counters.inc("state.untrusted")
            self.refused = {"commit": exc.sha, "reason": exc.reason}
            self._warn("untrusted", exc.sha, f"refused a state commit: {exc.detail}")
            return True  # the tree stays at the last verified commit: a holder goes on
        except BatonError as exc:
            self.counters.inc("state.unavailable")
            self._warn("unavailable", exc.code, f"state pull failed: {exc.detail}")
            return False
        if pulled.taken:
            self.counters.inc("state.taken", pulled.taken)
            self.refused = None
            log.info("state at %s (%d new commits verified)", pulled.head, pulled.taken)
        return True

    def _commit_and_push(self) -> None:
        try:
            made = self.store.commit(
                epoch=self.epoch, now=self.clock.wall_s(), message="agent state"
            )
            if made is not None:
                self.counters.inc("state.commits")
            if self.store.nested:
                self.counters.inc("state.nested")
                where = ", ".join(self.store.nested)
                self._warn("nested", where, f"not synced (a git repository of its own): {where}")
            head = self.store.head()
            if head is None or head == self.pushed:
                return
            if not self.store.push():
                self.counters.inc("state.push_refused")
                if not self._absorb():
                    return
                head = self.store.head()
                if not self.store.push():
                    self._warn("push_refused", str(head), "the state remote moved again; later")
                    return
            self.pushed = head
            self.counters.inc("state.pushed")
        except BatonError as exc:
            self.counters.inc("state.unavailable")
            self._warn("unavailable", exc.code, f"state commit or push failed: {exc.detail}")

    def _absorb(self) -> bool:
        """The remote has commits this holder lacks (an older holder's late push): merge
        them in, never force over them. False if they cannot be (not trusted, or of a
        newer holder: then this one is stale and the lease says so soon)."""
        try:
            conflicts = self.store.absorb(
                self.signers(), self.highest_epoch, epoch=self.epoch, now=self.clock.wall_s()
            )
        except UntrustedCommit as exc:
            self.counters.inc("state.untrusted")
            self.refused = {"commit": exc.sha, "reason": exc.reason}
            self._warn("untrusted", exc.sha, f"will not merge the remote's state: {exc.detail}")
            return False
        self.counters.inc("state.merged")
        if conflicts:
            self.counters.inc("state.conflicts", len(conflicts))
            where = ", ".join(conflicts)
            self._warn(
                "conflicts", where, f"kept this holder's side of {where}; theirs is in the history"
            )
        self.conflicts = conflicts
        return True

    def _warn(self, kind: str, what: str, line: str) -> None:
        """Log a new ``what`` of ``kind`` at once, the same one again once a minute."""
        now = self.clock.monotonic_ms()
        last = self.logged.get(kind)
        if last is None or last[0] != what or now - last[1] >= REPEAT_LOG_MS:
            self.logged[kind] = (what, now)
            log.warning("%s", line)
