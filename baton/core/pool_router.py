"""The pool's routing on the holder (sans-IO): the shared design's SessionRouter and
MachinePoolRegistry (docs/DESIGN.md, "The pool").

Theory of operation. The holder alone takes messages in and sends replies out; the
SessionRouter decides where each topic's next message runs. A topic runs one message at
a time (its agent sees its turns in order), so a topic is either **idle** or has one
**TopicRun** in flight, with its further messages buffered in arrival order. When a
topic is idle and has a message, it is placed (baton.core.pool_placement.place: pinned,
sticky, least-loaded) and the message is dispatched to the placed machine as a TopicRun
stamped with the holder's lease epoch (``term``) and the topic's ownership ``epoch``. A
result is taken only if it is the TopicRun in flight, exactly (``result``); anything
else (a machine that lost the topic, an older epoch, a TopicRun of an older holder) is
refused.

- **A move** is a pin (``pin``): the topic's message in flight finishes where it runs,
  the next ones are buffered, and the next dispatch places it on the pinned machine at
  the next epoch. Nothing runs in two places; the turn count goes on.
- **An owner that dies** (not heard from within the ttl), or a TopicRun unanswered past
  ``run_timeout_ms`` (lost on the way, or on a machine that restarted within the ttl),
  is taken back at the next ``tick`` and dispatched at the next epoch (elsewhere, or to
  its pinned machine once that is back), once; a late result from it
  is refused. A pin to a dead machine holds the topic's messages until it returns. A
  run sent to pull its topic's state first has ``PULL_MS`` more (its machine waits at
  most that long for the state, then runs it): a slow state sync can delay a moved
  topic, never keep it taken back and sent again for ever.
- **A holder that fails over**: the new holder's router starts from the replicated
  placements and pins (``restore``) at its own, higher, lease epoch, so no TopicRun of the
  old holder can ever match one of the new; the channel and the ledger bring it the
  messages not yet answered.

The MachinePoolRegistry is the live view of the machines (nickname, last heard on the
holder's own clock); their load is the number of topics placed on each. A machine that
runs no agent is left out of it (never placed on, never a move's target).

Invariants (tests/unit/test_pool_router.py, a hypothesis state machine):
- For every topic and (term, epoch) at most one machine is ever sent a TopicRun.
- A message is accepted at most once, and only from the TopicRun in flight for it.
- Every message taken in is in flight or buffered until accepted; none is dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from baton.core.pool_placement import Pin, Placement, PoolMachine, Reason, place

PULL_MS = 30_000  # the longest a run waits on its machine for its topic's state


@dataclass(frozen=True)
class TopicRun:
    """Run message ``key`` of ``topic`` on ``machine_id``: the holder of lease epoch
    ``term`` asks, with the topic owned at ownership ``epoch``."""

    topic: str
    key: str
    machine_id: str
    term: int
    epoch: int


class MachinePoolRegistry:
    """The machines of the pool as the holder sees them."""

    def __init__(self) -> None:
        self.machines: dict[str, PoolMachine] = {}
        self.unable: set[str] = set()  # machines that run no agent: never placed on

    def heard(self, machine_id: str, nickname: str, now_ms: float) -> None:
        self.machines[machine_id] = PoolMachine(machine_id, nickname, 0, now_ms)

    def able(self, machine_id: str, runs_agents: bool) -> None:
        if runs_agents:
            self.unable.discard(machine_id)
        else:
            self.unable.add(machine_id)

    def left(self, machine_id: str) -> None:
        self.machines.pop(machine_id, None)
        self.unable.discard(machine_id)

    def view(self, placements: Iterable[Placement]) -> dict[str, PoolMachine]:
        """The machines that run agents, with their loads: the topics placed on each."""
        loads: dict[str, int] = {}
        for p in placements:
            if p.machine_id is not None:
                loads[p.machine_id] = loads.get(p.machine_id, 0) + 1
        return {
            i: replace(m, load=loads.get(i, 0))
            for i, m in self.machines.items()
            if i not in self.unable
        }


class SessionRouter:
    def __init__(
        self,
        term: int,
        registry: MachinePoolRegistry,
        *,
        ttl_ms: int,
        run_timeout_ms: int | None = None,
        placements: Mapping[str, Placement] | None = None,
        pins: Mapping[str, Pin] | None = None,
    ) -> None:
        self.term = term
        self.registry = registry
        self.ttl_ms = ttl_ms
        self.run_timeout_ms = run_timeout_ms
        self.placements: dict[str, Placement] = dict(placements or {})
        self.pins: dict[str, Pin] = dict(pins or {})
        self.running: dict[str, TopicRun] = {}
        self.sent_at: dict[str, float] = {}  # topic -> when its run in flight went out
        self.grace: dict[str, float] = {}  # topic -> more time its run has (a pull first)
        self.held: set[str] = set()  # topics whose run waits to go out (its state follows)
        self.waiting: dict[str, deque[str]] = {}
        self.taken_back = 0  # runs taken back: a dead owner's, or one past its time

    @classmethod
    def restore(
        cls,
        term: int,
        registry: MachinePoolRegistry,
        *,
        ttl_ms: int,
        run_timeout_ms: int | None = None,
        placements: Mapping[str, Placement],
        pins: Mapping[str, Pin],
    ) -> SessionRouter:
        """A new holder's router, from the replicated placements and pins."""
        return cls(
            term,
            registry,
            ttl_ms=ttl_ms,
            run_timeout_ms=run_timeout_ms,
            placements=placements,
            pins=pins,
        )

    def inbound(self, topic: str, key: str, now_ms: float) -> list[TopicRun]:
        """A message taken in (a repeat of one in flight or waiting changes nothing).
        The caller never routes a message that was answered (the ledger knows): the
        router forgets a key once its result is taken."""
        running = self.running.get(topic)
        queue = self.waiting.get(topic, ())
        if (running is None or running.key != key) and key not in queue:
            self.waiting.setdefault(topic, deque()).append(key)
        return self._pump(topic, now_ms)

    def result(self, run: TopicRun, now_ms: float) -> tuple[bool, list[TopicRun]]:
        """A machine's result for ``run``: taken only if it is the TopicRun in flight."""
        if self.running.get(run.topic) != run:
            return False, []
        del self.running[run.topic]
        del self.sent_at[run.topic]
        self.grace.pop(run.topic, None)
        self.held.discard(run.topic)
        return True, self._pump(run.topic, now_ms)

    def pin(self, pin: Pin, now_ms: float) -> list[TopicRun]:
        self.pins[pin.topic] = pin
        return self._pump(pin.topic, now_ms)

    def unpin(self, topic: str, now_ms: float) -> list[TopicRun]:
        self.pins.pop(topic, None)
        return self._pump(topic, now_ms)

    def tick(self, now_ms: float) -> list[TopicRun]:
        """Runs on machines dead past the ttl, and runs unanswered past
        ``run_timeout_ms`` (lost on the way, or on a machine that restarted within the
        ttl), are taken back and dispatched again at the next epoch; topics whose
        messages wait are placed again (a machine may be back)."""
        machines = self.registry.machines
        runs: list[TopicRun] = []
        timeout = self.run_timeout_ms
        for topic, run in list(self.running.items()):
            owner = machines.get(run.machine_id)
            out = topic not in self.held  # a run held back has deadlines of its own
            late = (
                out
                and timeout is not None
                and now_ms - self.sent_at[topic] > timeout + self.grace.get(topic, 0)
            )
            if owner is None or not owner.alive(now_ms, self.ttl_ms) or late:
                self.take_back(topic)
        for topic in list(self.waiting):
            runs += self._pump(topic, now_ms)
        return runs

    def hold(self, topic: str) -> None:
        """The topic's run in flight waits to go out (its agent state follows it): its
        time is not counted until ``sent``."""
        if topic in self.running:
            self.held.add(topic)

    def sent(self, topic: str, now_ms: float, pull: bool = False) -> None:
        """The topic's run in flight went out now: its time counts from here (``pull``:
        its machine pulls the topic's state first, PULL_MS more)."""
        if topic in self.running:
            self.held.discard(topic)
            self.sent_at[topic] = now_ms
            self.grace[topic] = PULL_MS if pull else 0

    def take_back(self, topic: str) -> None:
        """The topic's run in flight is taken back (its machine is dead, it is late, or
        it could not be sent or was refused): its message waits first in line, and the
        topic is owned by nobody, so its next run is at the next epoch, even on the same
        (pinned) machine, and the taken-back run's result is refused."""
        run = self.running.pop(topic, None)
        if run is None:
            return
        self.taken_back += 1
        del self.sent_at[topic]
        self.grace.pop(topic, None)
        self.held.discard(topic)
        self.waiting.setdefault(topic, deque()).appendleft(run.key)
        placed = self.placements[topic]
        self.placements[topic] = replace(placed, machine_id=None, reason=Reason.UNOWNED)

    def _pump(self, topic: str, now_ms: float) -> list[TopicRun]:
        queue = self.waiting.get(topic)
        if topic in self.running or not queue:
            return []
        machines = self.registry.view(self.placements.values())
        placed = place(
            topic,
            self.placements.get(topic),
            self.pins.get(topic),
            machines,
            now_ms=now_ms,
            ttl_ms=self.ttl_ms,
        )
        self.placements[topic] = placed
        if placed.machine_id is None or placed.waiting:
            return []  # nowhere to run yet: the messages wait
        run = TopicRun(topic, queue.popleft(), placed.machine_id, self.term, placed.epoch)
        if not queue:
            del self.waiting[topic]
        self.running[topic] = run
        self.sent_at[topic] = now_ms
        return [run]
