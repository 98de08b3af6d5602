"""StateSyncActor: the agent's state directory follows the awake role (StateSync).

Every ``interval_ms`` (on its Tick):
- **holding**: when it has just become the holder it pulls (a new holder starts from
  the newest verified state) and opens its epoch with a commit, pushed at once, which
  fences out every older holder. Then it commits whatever changed in the tree, signed
  and stamped with its epoch, takes the standbys' queued changes (verified; its own
  side kept where both changed a file, the paths and the machine named:
  ``state.conflicts``), and fast-forwards the remote. A push the remote refuses (an
  older holder's late push landed first) is never forced: the remote's commits are
  verified and merged in the same way, and the merge is pushed.
- **standby**: it commits a change made in its own tree (``state.queued``), pulls
  (every new commit verified before the tree moves; a refused one leaves the tree where
  it was, counted and alarmed; a commit of an epoch above the highest it has heard of
  waits, ``state.ahead``, no alarm), and sends what the holder has not taken to its
  queue (``state.queue_sent``).

``Flush`` (asked by the node before the holder releases its lease) commits and pushes
at once, so a planned stop or handoff carries the last turns' changes. ``SyncNow`` runs
this machine's step at once and then replies (the pool's topic handoff): every SyncNow
waiting when a step begins is answered by that one step (a step begun after a request
serves it), so a burst of handoffs, a dead machine's topics moving at once, costs one
step, not one each in a row.

With the ``state_sync`` component flag off (``baton features``), none of this happens:
the tree stays as it is, SyncNow replies at once, and status says ``disabled``.

Invariants:
- Only a holder pushes the state, and only with the epoch it holds; a standby writes
  only its own queue.
- The tree moves only to a verified descendant of what it held, or to a merge of one
  with this machine's own commits.
- A queue that cannot be taken (not trusted) is skipped until it changes, and never
  keeps the holder from pushing its own changes.
- A failure of the store, even one no BatonError names, is counted and logged (a new
  kind or refused commit at once, repeats once a minute) and never stops the actor:
  the next tick tries again.
- A git repository of its own inside the tree is not synced: named and counted
  (``state.nested``); nor is a file over 16 MiB (``state.too_big``) or one git cannot
  read (``state.unreadable``).
"""

from __future__ import annotations

import contextlib
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
SLOW_STEP_MS = 5000  # a step this long is logged


@dataclass(frozen=True)
class Flush:
    """Commit and push now (a holder's last changes before it lets go)."""


@dataclass(frozen=True)
class SyncNow:
    """This machine's step now, whatever the interval, then ``reply()`` (the pool: a
    topic's old machine queues its changes, the holder takes them and pushes, the new
    machine pulls, before the topic runs there)."""

    reply: Callable[[], None]


@dataclass(frozen=True)
class _Answer:
    """Run one step for the SyncNows waiting (told by the actor to itself)."""


class StateView:
    """What status shows of the state, as of the actor's last step: read from any
    thread without asking the actor (a pull may keep it busy for seconds)."""

    def __init__(self, remote: str) -> None:
        self.current: dict[str, Any] = {
            "remote": remote,
            "head": None,
            "pushed": None,
            "refused": None,
            "disabled": False,
        }


class StateSyncActor(pykka.ThreadingActor):
    def __init__(
        self,
        store: StateStore,
        *,
        me: str,
        signers: Callable[[], Mapping[str, SignerWindow]],
        clock: Clock,
        counters: Counters,
        interval_ms: int,
        view: StateView,
        enabled: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__()
        self.store = store
        self.enabled = enabled  # the component flag (baton features): off, it does nothing
        self.me = me
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
        self.opened = 0  # the epoch this holder opened with a commit on the remote
        self.marked = 0  # the newest removal a commit of this holder is dated after
        self.skipped: dict[str, str] = {}  # machine id -> a queued commit not trusted
        self.pushed: str | None = None
        self.refused: dict[str, str] | None = None
        self.asked: list[Callable[[], None]] = []  # SyncNow replies waiting for a step
        self.conflicts: list[str] = []  # of the last merge of the remote's commits
        self.logged: dict[str, tuple[str, float]] = {}

    def on_start(self) -> None:
        self._show()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick | Flush | SyncNow | _Answer) and not self.enabled():
            self._off()
            if isinstance(message, SyncNow):
                self.asked.append(message.reply)
            asked, self.asked = self.asked, []
            self._answer(asked)  # a topic's handoff goes on without its state
            return None
        if isinstance(message, Tick):
            if message.now_ms >= self.due_ms:
                self.due_ms = message.now_ms + self.interval_ms
                self._step()
        elif isinstance(message, LeaseChanged):
            if message.phase is Phase.HOLDING and self.phase is not Phase.HOLDING:
                self.must_pull, self.due_ms = True, 0.0  # at the next tick
            self.phase, self.epoch = message.phase, message.epoch
            self.highest_epoch = max(self.highest_epoch, message.epoch)
        elif isinstance(message, Flush) and self.phase is Phase.HOLDING:
            self._guarded(self._commit_and_push)
        elif isinstance(message, SyncNow):
            self.asked.append(message.reply)
            if len(self.asked) == 1:  # the SyncNows behind it in the mailbox join it
                self.actor_ref.tell(_Answer())
        elif isinstance(message, _Answer) and self.asked:
            self._step()
        return None

    def _step(self) -> None:
        """One step; it serves every SyncNow received before it began."""
        asked, self.asked = self.asked, []
        began = self.clock.monotonic_ms()
        self._guarded(self._sync)
        took = self.clock.monotonic_ms() - began
        if took >= SLOW_STEP_MS:  # a topic's handoff and a pool run wait on steps
            log.info("state sync: a step took %.0f ms (%d waiting on it)", took, len(asked))
        self._answer(asked)

    @staticmethod
    def _answer(asked: list[Callable[[], None]]) -> None:
        for reply in asked:
            with contextlib.suppress(pykka.ActorDeadError):  # the asker is stopping
                reply()

    def _off(self) -> None:
        """Turned off (``baton features disable state_sync``): no commit, pull or push
        until it is back on (then the next step takes up what changed meanwhile)."""
        if not self.view.current.get("disabled"):
            self.view.current = {**self.view.current, "disabled": True}
            log.info("state sync: off (baton features)")

    def _now(self) -> float:
        """The time to date a commit at: the clock, but never before this machine
        joined by the registry (the approver's clock): git would refuse it, and every
        commit after it."""
        mine = self.signers().get(self.me)
        return max(self.clock.wall_s(), 0 if mine is None else mine.after)

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
            "disabled": False,
            "head": head,
            "pushed": self.pushed,
            "refused": self.refused,
            "conflicts": self.conflicts,
        }

    def _sync(self) -> None:
        if self.phase is not Phase.HOLDING:
            self._queue_and_pull()
            return
        if self.must_pull:  # a change of its own first, or git will not move the tree
            self._commit_own("kept before the remote's state was taken", "state.commits")
            self.must_pull = not self._pull()
        if not self.must_pull and self.opened < self.epoch:
            self._open_epoch()
        self._commit_and_push()

    def _open_epoch(self) -> None:
        try:
            if self.store.open_epoch(self.epoch, self._now()) is not None:
                self.counters.inc("state.commits")
            self.opened = self.epoch
        except BatonError as exc:
            self.counters.inc("state.unavailable")
            self._warn("unavailable", exc.code, f"cannot open epoch {self.epoch}: {exc.detail}")

    def _queue_and_pull(self) -> None:
        """A standby's step: its own changes committed, the remote's taken, and what the
        holder lacks sent to this machine's queue."""
        self._commit_own("queued", "state.queued")
        if not self._pull():
            return
        try:
            if self.store.send_queue() is not None:
                self.counters.inc("state.queue_sent")
        except BatonError as exc:
            self.counters.inc("state.unavailable")
            self._warn("unavailable", exc.code, f"cannot send queued state: {exc.detail}")

    def _commit_own(self, message: str, counter: str) -> None:
        """Commit a change made here at the head's epoch (a standby's, queued to the
        holder; or a new holder's, before it takes the remote's state)."""
        try:
            if self.store.commit(epoch=None, now=self._now(), message=message):
                self.counters.inc(counter)
            self._report_tree()
        except BatonError as exc:
            self.counters.inc("state.unavailable")
            self._warn("unavailable", exc.code, f"cannot commit a change made here: {exc.detail}")

    def _pull(self) -> bool:
        """Take the remote's new verified commits; True unless the store failed."""
        try:
            pulled = self.store.pull(self.signers(), self.highest_epoch, now=self._now())
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
        if pulled.conflicts:
            self._conflicted(list(pulled.conflicts), "the remote's side kept over this machine's")
        return True

    def _commit_and_push(self) -> None:
        try:
            self._mark_removals()
            made = self.store.commit(epoch=self.epoch, now=self._now(), message="agent state")
            if made is not None:
                self.counters.inc("state.commits")
            self._report_tree()
            self._take_queues()
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

    def _report_tree(self) -> None:
        """What the last commit left out of the tree, named and counted."""
        for kind, paths, why in (
            ("too_big", self.store.too_big, "too large"),
            ("unreadable", self.store.unreadable, "git cannot read it"),
            ("nested", self.store.nested, "a git repository of its own"),
        ):
            if paths:
                self.counters.inc(f"state.{kind}")
                where = ", ".join(paths)
                self._warn(kind, where, f"not synced ({why}): {where}")

    def _mark_removals(self) -> None:
        """Once per removal the registry shows: a commit dated after it (see
        StateRepo.mark_removals), so a removed machine cannot back-date one."""
        windows = self.signers()
        latest = max((w.before for w in windows.values() if w.before is not None), default=0)
        if latest > self.marked:
            if self.store.mark_removals(windows, self.epoch, self._now()) is not None:
                self.counters.inc("state.commits")
            self.marked = latest

    def _absorb(self) -> bool:
        """The remote has commits this holder lacks (an older holder's late push): merge
        them in, never force over them. False if they cannot be (not trusted, or of a
        newer holder: then this one is stale and the lease says so soon)."""
        try:
            conflicts = self.store.absorb(
                self.signers(), self.highest_epoch, epoch=self.epoch, now=self._now()
            )
        except CommitAhead as exc:  # a newer holder opened its epoch: this one is stale
            self.counters.inc("state.fenced")
            self._warn(
                "fenced", exc.sha, f"not pushed: a newer holder's state is there ({exc.reason})"
            )
            return False
        except UntrustedCommit as exc:
            self.counters.inc("state.untrusted")
            self.refused = {"commit": exc.sha, "reason": exc.reason}
            self._warn("untrusted", exc.sha, f"will not merge the remote's state: {exc.detail}")
            return False
        self.counters.inc("state.merged")
        self._conflicted(conflicts, "this holder's side kept over the remote's late push")
        return True

    def _take_queues(self) -> None:
        """Merge in the standbys' queued changes, each verified first. One that cannot be
        taken is skipped (until its queue changes); the holder's own push goes on."""
        windows = self.signers()
        try:
            queued = self.store.queued(windows)
        except BatonError as exc:
            self.counters.inc("state.unavailable")
            self._warn("unavailable", exc.code, f"cannot read the state queues: {exc.detail}")
            return
        for who, sha in queued.items():
            if self.skipped.get(who) == sha:
                continue
            try:
                conflicts = self.store.take_queued(
                    who, sha, windows, self.highest_epoch, epoch=self.epoch, now=self._now()
                )
            except CommitAhead as exc:  # this holder is older than the queue knows
                self.counters.inc("state.ahead")
                log.info("not taking %s's queued state yet: %s", who, exc.reason)
                continue
            except UntrustedCommit as exc:
                self.counters.inc("state.untrusted")
                self.skipped[who] = sha
                self.refused = {"commit": exc.sha, "reason": exc.reason, "queue": who}
                self._warn("untrusted", exc.sha, f"refused {who}'s queued state: {exc.detail}")
                continue
            except BatonError as exc:
                self.counters.inc("state.unavailable")
                self._warn("unavailable", exc.code, f"cannot take {who}'s queue: {exc.detail}")
                continue
            if conflicts is not None:
                self.counters.inc("state.queue_taken")
                self._conflicted(conflicts, f"this holder's side kept over {who}'s queued change")

    def _conflicted(self, conflicts: list[str], how: str) -> None:
        if conflicts:
            self.counters.inc("state.conflicts", len(conflicts))
            where = ", ".join(conflicts)
            self._warn("conflicts", where, f"{how} in {where}; the other is in the history")
            self.conflicts = conflicts

    def _warn(self, kind: str, what: str, line: str) -> None:
        """Log a new ``what`` of ``kind`` at once, the same one again once a minute."""
        now = self.clock.monotonic_ms()
        last = self.logged.get(kind)
        if last is None or last[0] != what or now - last[1] >= REPEAT_LOG_MS:
            self.logged[kind] = (what, now)
            log.warning("%s", line)
