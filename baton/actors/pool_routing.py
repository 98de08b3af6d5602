"""The pool's routing on the holder (docs/DESIGN.md, "The pool"): the SessionRouter
with the runs it waits on, used by the PoolActor.

Theory of operation. Delivery starts an agent run (the LiveTailActor's StartAgent, with
the topic's history) and waits on its token, one run per topic. With the pool on, the
PoolActor gives it to ``PoolRouting.route``: a move command ("move this to charlie")
is answered here, as the agent would answer; any other message goes into the
SessionRouter, which places the topic and hands out TopicRuns. A run placed here runs in
the agent pool; one placed on a peer goes out as a ``pool_run`` with its history,
sealed to that peer. The result the router takes (``finished``) becomes delivery's
AgentDone for the token, so the ledger, the fenced outbox and exactly-once are
delivery's as before; a result the router refuses (an older epoch, a machine that lost
the topic, a repeat) is counted and dropped. A run that cannot be sent, or that its
machine refuses (its lease view behind), is taken back and placed again at the next
tick, at the next epoch. A run that gives a topic to another machine than the one that
last ran it waits for the topic's agent state to follow (baton.actors.pool_handoff).

Each change of a placement or pin is kept in the TopicPlacementPinStore (``changes``
tells the actor), so a new holder restores them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from baton.actors.delivery_messages import AgentDone
from baton.actors.pool_handoff import TopicHandoffs
from baton.agents.base import AgentMessage, Turn
from baton.core.ledger import LedgerEntry
from baton.core.pool_commands import NicknameCommand, RelocationNicknameSet
from baton.core.pool_placement import (
    Pin,
    Placement,
    PoolMachine,
    Reason,
    TopicPlacementDescription,
    place,
)
from baton.core.pool_router import MachinePoolRegistry, SessionRouter, TopicRun
from baton.core.pool_transfer import (
    TransferPlan,
    TransferRefusal,
    TransferRequest,
    plan_transfer,
    transfer_limiter,
)

log = logging.getLogger("baton.pool")

MAX_SHOWN = 16  # runs in flight the view names


@dataclass(frozen=True)
class Waiting:
    """What delivery waits on for a message: its token, the entry, its history."""

    token: int
    entry: LedgerEntry
    history: tuple[Turn, ...]

    def message(self) -> AgentMessage:
        e = self.entry
        return AgentMessage(e.topic, e.message_id, e.text, e.sender, e.kind)


class PoolRouting:
    """The holder's side of the pool for one term (``router.term``)."""

    def __init__(
        self,
        me: str,
        router: SessionRouter,
        *,
        run_here: Callable[[TopicRun, Waiting], None],
        run_there: Callable[[TopicRun, Waiting, bool], bool],
        done: Callable[[AgentDone], None],
        count: Callable[[str], None],
        release: Callable[[str, str], bool] = lambda machine, topic: False,
        sync: Callable[[TopicRun], None] | None = None,
    ) -> None:
        self.me = me
        self.router = router
        self.run_here = run_here
        self.run_there = run_there  # (run, what waits, pull): False if it could not be sent
        self.handoffs = TopicHandoffs(me, release=release, sync=sync, send=self._send, count=count)
        self.done = done
        self.count = count
        self.waiting: dict[str, Waiting] = {}  # ledger key -> what delivery waits on
        self.limiter = transfer_limiter()
        self.boots: dict[str, str] = {}  # machine -> the run of its process it last said
        self.seen: set[str] = set()  # topics a message came in for in this term
        self.active = True  # False while the holder stands by: nothing new goes out

    @property
    def registry(self) -> MachinePoolRegistry:
        return self.router.registry

    # --- messages in, results out ------------------------------------------------------

    def route(
        self, wait: Waiting, nicknames: RelocationNicknameSet, now: float, wall_s: float
    ) -> None:
        self.seen.add(wait.entry.topic)
        command = NicknameCommand.parse(wait.entry.text, nicknames)
        if command is not None:
            self.count("pool.commands")
            request = TransferRequest(wait.entry.topic, command.machine_id, wait.entry.sender)
            answer = self.transfer(request, now, wall_s)
            self.done(AgentDone(wait.token, wait.entry.key, (_said(answer, command),)))
            return
        self.waiting[wait.entry.key] = wait
        self._dispatch(self.router.inbound(wait.entry.topic, wait.entry.key, now), now)

    def finished(
        self, run: TopicRun, replies: tuple[str, ...] | None, error: str | None, now: float
    ) -> bool:
        """A machine's result for ``run``: delivery's AgentDone if the router takes it."""
        taken, runs = self.router.result(run, now)
        if not taken:
            self.count("pool.refused.stale")
            log.info("pool: a result for %s from %s at epoch %d refused (not in flight)",
                     run.key, run.machine_id, run.epoch)  # fmt: skip
            return False
        self.handoffs.took(run)
        wait = self.waiting.pop(run.key, None)
        if wait is not None:
            self.count("pool.results")
            self.done(AgentDone(wait.token, run.key, replies, error))
        self._dispatch(runs, now)
        return True

    def refused(self, run: TopicRun, now: float) -> None:
        """``run``'s machine would not take it (its view of the lease is behind): it is
        placed again at the next tick."""
        if self.router.running.get(run.topic) == run:
            self.count("pool.run_refused")
            self.router.take_back(run.topic)

    def booted(self, machine_id: str, boot: str) -> bool:
        """``machine_id``'s process says which run of it this is: if that changed, every
        run in flight there died with the process before and is taken back (placed
        again at the next tick). Whether it changed."""
        before = self.boots.get(machine_id)
        self.boots[machine_id] = boot
        if before is None or before == boot:
            return False
        for topic, run in list(self.router.running.items()):
            if run.machine_id == machine_id:
                self.count("pool.lost_in_restart")
                self.router.take_back(topic)
        return True

    def tick(self, now: float) -> None:
        self.handoffs.tick(now, lambda run: self.router.running.get(run.topic) == run)
        before = dict(self.router.running)
        runs = self.router.tick(now)
        for topic, run in before.items():
            if self.router.running.get(topic) != run:
                self._taken_back(run, now)
        self._dispatch(runs, now)

    def _taken_back(self, run: TopicRun, now: float) -> None:
        """Say why the router took ``run`` back at its tick (rare: a machine dead or a
        run late), so an operator can follow a topic that moves without being asked."""
        machine = self.registry.machines.get(run.machine_id)
        heard = None if machine is None else machine.last_heard_ms
        if heard is None:
            why = "never heard"
        elif now - heard > self.router.ttl_ms:
            why = f"unheard for {now - heard:.0f} ms"
        else:
            why = f"unanswered past {self.router.run_timeout_ms} ms"
        log.info("pool: the run of %s on %s at epoch %d taken back (%s)",
                 run.key, run.machine_id, run.epoch, why)  # fmt: skip

    def _dispatch(self, runs: list[TopicRun], now: float) -> None:
        machines = self.registry.machines
        ttl = self.router.ttl_ms

        def alive(machine_id: str) -> bool:
            m = machines.get(machine_id)
            return m is not None and m.alive(now, ttl)

        for run in runs:
            if not self.active:  # standing by (suspended, yielded): placed again later
                log.info("pool: the run of %s taken back: this holder stands by", run.key)
                self.router.take_back(run.topic)
                continue
            self.count("pool.runs")
            self.router.hold(run.topic)  # its time counts once it is out
            self.handoffs.dispatch(run, now, alive)  # its state first, when it moves

    def _send(self, run: TopicRun, pull: bool, now: float) -> None:
        if self.router.running.get(run.topic) != run:
            return  # taken back while its state was handed over: placed again
        wait = self.waiting[run.key]  # every key the router holds came in by route()
        self.router.sent(run.topic, now, pull)
        if run.machine_id == self.me:
            self.run_here(run, wait)
        elif not self.run_there(run, wait, pull):
            self.count("pool.send_failed")
            log.info("pool: the run of %s could not be sent to %s: taken back",
                     run.key, run.machine_id)  # fmt: skip
            self.router.take_back(run.topic)

    # --- moves -------------------------------------------------------------------------

    def transfer(
        self, request: TransferRequest, now: float, wall_s: float
    ) -> TransferPlan | TransferRefusal:
        """The validated planner; a plan pins the topic and hands it over once its
        message in flight is done."""
        router = self.router
        topic = request.topic
        known = self.seen | set(router.placements) | set(router.pins)
        plan = plan_transfer(
            request,
            machines=self.machines(),
            known_topics=known,
            placement=router.placements.get(topic),
            pin=router.pins.get(topic),
            in_flight=topic in router.running,
            limiter=self.limiter,
            now_ms=now,
            wall_s=wall_s,
            ttl_ms=router.ttl_ms,
        )
        if isinstance(plan, TransferPlan):
            self.count("pool.moves")
            log.info("pool: %s pinned to %s by %s", topic, plan.target, request.by)
            self._dispatch(router.pin(plan.pin, now), now)
        return plan

    def unpin(self, topic: str, now: float) -> bool:
        if topic not in self.router.pins:
            return False
        self._dispatch(self.router.unpin(topic, now), now)
        return True

    # --- views -------------------------------------------------------------------------

    def machines(self) -> dict[str, PoolMachine]:
        return self.registry.view(self.router.placements.values())

    def describe(self, topic: str, now: float) -> TopicPlacementDescription:
        """Where ``topic`` runs: its run in flight's machine, else where its next
        message would run (a pin set since its last run already counts); pinned when
        that is the machine it is pinned to."""
        r = self.router
        machines = self.machines()
        placed, pin = r.placements.get(topic), r.pins.get(topic)
        if topic not in r.running and (placed is not None or pin is not None):
            placed = place(topic, placed, pin, machines, now_ms=now, ttl_ms=r.ttl_ms)
        if placed is not None and pin is not None and placed.machine_id == pin.machine_id:
            placed = replace(placed, reason=Reason.PINNED)
        return TopicPlacementDescription.of(
            topic, placed, machines, self.me, now_ms=now, ttl_ms=r.ttl_ms
        )

    def kept(self) -> tuple[Mapping[str, Pin], Mapping[str, Placement]]:
        return self.router.pins, self.router.placements

    def view(self, now: float) -> dict[str, Any]:
        """The router's counts, and where each run in flight is (at most MAX_SHOWN): out
        for how long, or held for its state's handoff at which stage."""
        r = self.router
        runs = sorted(r.running.items())[:MAX_SHOWN]
        return {
            "running": len(r.running),
            "waiting": sum(len(q) for q in r.waiting.values()),
            "taken_back": r.taken_back,
            "active": self.active,
            "in_flight": {topic: self._where(run, now) for topic, run in runs},
            "held_back": self._held_back(now),
        }

    def _held_back(self, now: float) -> dict[str, str]:
        """Topics whose messages wait with no run out (at most MAX_SHOWN), and why."""
        r = self.router
        machines = r.registry.view(r.placements.values()).values()
        any_alive = any(m.alive(now, r.ttl_ms) for m in machines)
        out: dict[str, str] = {}
        for topic, queue in sorted(r.waiting.items()):
            if topic in r.running or not queue or len(out) >= MAX_SHOWN:
                continue
            placed = r.placements.get(topic)
            if placed is not None and placed.waiting:
                why = f"pinned to {placed.machine_id}, not alive"
            elif placed is not None and placed.machine_id is not None:
                why = f"placed on {placed.machine_id}, next tick"
            else:  # (just taken back: placed at the next tick)
                why = "placed at the next tick" if any_alive else "no machine alive"
            out[topic] = f"{len(queue)} waiting: {why}"
        return out

    def _where(self, run: TopicRun, now: float) -> str:
        at = f"{run.key} on {run.machine_id} at epoch {run.epoch}"
        handing = self.handoffs.handing.get(run.topic)
        if handing is not None and handing.run == run:
            return f"{at}: its state first ({handing.stage})"
        if run.topic in self.router.held:
            return f"{at}: held"
        return f"{at}: out {now - self.router.sent_at[run.topic]:.0f} ms"


def _said(answer: TransferPlan | TransferRefusal, command: NicknameCommand) -> str:
    """The reply to a move command in the conversation."""
    if isinstance(answer, TransferRefusal):
        return f"Not moved: {answer.detail}."
    if answer.handoff:
        return f"Moving this topic to {command.nickname}: it runs there from the next message."
    return f"This topic stays on {command.nickname}, pinned there now."
