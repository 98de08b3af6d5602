"""A topic's agent state follows it to its new machine (docs/DESIGN.md, "The pool"), as
a shard's state does in Akka Cluster Sharding's handoff.

All agent state goes through the holder (StateSync: a standby queues its changes, the
holder takes them and pushes, the others pull). When the router gives a topic to a
machine other than the one that last ran it (in this term; a topic new to the term
that the holder runs needs nothing: its tree is where the state meets), the holder hands
it over in stages before the run goes out:

1. **release**: the old machine, if alive and not the holder, is asked to queue its
   changes now (``pool_release``; its StateSync's step, then ``pool_released``), for
   at most RELEASE_MS;
2. **sync**: the holder's own StateSync step now: it commits, takes the queues (the old
   machine's changes with them) and pushes, for at most SYNC_MS;
3. the run goes out marked ``pull``: the new machine's StateSync pulls before its agent
   runs (the holder runs its own without: its tree is where the state meets).

A stage that runs out of time goes on to the next (counted: ``pool.handoff_late``): a
topic never waits for ever on a machine that died. A run taken back meanwhile is dropped
from its handoff. Without StateSync (no state remote) a run goes out at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from baton.core.pool_router import TopicRun

log = logging.getLogger("baton.pool")

RELEASE_MS = 5000
SYNC_MS = 30_000


@dataclass
class Handing:
    run: TopicRun
    stage: str  # "release" or "sync"
    deadline: float


class TopicHandoffs:
    def __init__(
        self,
        me: str,
        *,
        release: Callable[[str, str], bool],
        sync: Callable[[TopicRun], None] | None,
        send: Callable[[TopicRun, bool, float], None],
        count: Callable[[str], None],
    ) -> None:
        self.me = me
        self.release = release  # (old machine, topic): asked; False if it could not be
        self.sync = sync  # the holder's StateSync step for this run (None: no StateSync)
        self.send = send  # (run, pull, now): the run goes out (or runs here)
        self.count = count
        self.owners: dict[str, str] = {}  # topic -> the machine whose result was taken last
        self.handing: dict[str, Handing] = {}

    def dispatch(self, run: TopicRun, now: float, alive: Callable[[str], bool]) -> None:
        before = self.owners.get(run.topic)
        self.handing.pop(run.topic, None)  # an older run of the topic was taken back
        here_first = before is None and run.machine_id == self.me  # the holder's tree has it
        if self.sync is None or before == run.machine_id or here_first:
            self.send(run, False, now)
            return
        self.count("pool.handoffs")
        log.info("pool: %s moves from %s to %s at epoch %d: its state first",
                 run.topic, before or "the holder", run.machine_id, run.epoch)  # fmt: skip
        asked = before not in (None, self.me) and alive(before) and self.release(before, run.topic)
        if asked:
            self.handing[run.topic] = Handing(run, "release", now + RELEASE_MS)
            return
        self._sync(run, now)

    def _sync(self, run: TopicRun, now: float) -> None:
        assert self.sync is not None
        self.handing[run.topic] = Handing(run, "sync", now + SYNC_MS)
        self.sync(run)

    def released(self, machine_id: str, topic: str, now: float) -> None:
        """The old machine queued its changes."""
        h = self.handing.get(topic)
        if h is not None and h.stage == "release" and self.owners.get(topic) == machine_id:
            self._sync(h.run, now)

    def synced(self, run: TopicRun, now: float) -> None:
        """The holder's StateSync step for ``run`` is done: the run goes out."""
        h = self.handing.get(run.topic)
        if h is not None and h.stage == "sync" and h.run == run:
            del self.handing[run.topic]
            self.send(run, run.machine_id != self.me, now)

    def took(self, run: TopicRun) -> None:
        """``run``'s result was taken: its machine holds the topic's latest changes."""
        self.owners[run.topic] = run.machine_id

    def tick(self, now: float, in_flight: Callable[[TopicRun], bool]) -> None:
        for topic, h in list(self.handing.items()):
            if not in_flight(h.run):
                del self.handing[topic]  # taken back: placed again, handed over again
            elif now >= h.deadline:
                self.count("pool.handoff_late")
                log.warning("pool: %s's state not handed over in time (%s): going on",
                            topic, h.stage)  # fmt: skip
                if h.stage == "release":
                    self._sync(h.run, now)
                else:
                    del self.handing[topic]
                    self.send(h.run, h.run.machine_id != self.me, now)
