"""The pool's runner on every machine (docs/DESIGN.md, "The pool"): the TopicRuns the
holder places here, run in the agent pool and answered with a ``pool_result``.

A ``pool_run`` is taken only from the machine this one's lease view says holds, at
that epoch: anything else is answered with a refusal (the holder places the topic again
at its next tick; a machine whose view of the lease is behind catches up), counted
(``pool.refused.not_holder``) and never run. A malformed run, or one whose box does
not open, is counted (``pool.refused.malformed``) and dropped. A run already running
here (the holder sent it again) is not run twice; past MAX_RUNNING runs at once a run
is refused (``pool.refused.busy``), so a holder gone wrong cannot queue without bound.
A run marked ``pull`` (its topic is new here) waits for this machine's StateSync step
first, at most PULL_MS (then it runs without: ``pool.pull_late``; the holder allows a
pull run that much more time), and starts only if the holder that asked still holds. A
machine without an agent refuses every run and answers only probes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import nacl.public

from baton.actors.pool_messages import Run, RunFinished
from baton.actors.pool_probe import PROBE_TEXT, PROBE_TOPIC
from baton.agents.base import AgentMessage, Turn
from baton.core.errors import PoolRefused
from baton.core.pool_router import PULL_MS, TopicRun
from baton.core.pool_state import MAX_ID_CHARS
from baton.core.registry import MachineEntry
from baton.wire.envelope import Envelope
from baton.wire.pool_transport import PoolTransport, open_run

log = logging.getLogger("baton.pool")

MAX_RUNNING = 256
REFUSED = "refused: "  # a refusal's error starts so (PoolActor: placed again)
NO_AGENT = "no agent: "  # ... and so when this machine runs no agent


class PoolRunner:
    def __init__(
        self,
        me: str,
        *,
        key: nacl.public.PrivateKey,
        transport: PoolTransport,
        run: Run | None,
        finished: Callable[[RunFinished], None],
        count: Callable[[str], None],
        sync: Callable[[tuple[Any, ...]], None] | None = None,
    ) -> None:
        self.me = me
        self.key = key
        self.transport = transport
        self.run = run  # None: this machine runs no agent (no channel configured)
        self.finished = finished  # tells the PoolActor
        self.count = count
        self.sync = sync  # this machine's StateSync step, then synced(what) (None: none)
        self.running: set[TopicRun] = set()
        # runs waiting for the agent's state to be pulled:
        # run -> (asker, message, history, when it began to wait)
        self.pulling: dict[TopicRun, tuple[str, AgentMessage, tuple[Turn, ...], float]] = {}

    def received(
        self,
        env: Envelope,
        holder: tuple[str | None, int],
        members: Mapping[str, MachineEntry],
        now: float,
    ) -> None:
        try:
            run, message, history, pull = open_run(env, self.key)
        except PoolRefused as exc:
            self.count("pool.refused.malformed")
            log.warning("pool: a run from %s refused: %.300s", env.sender, exc.detail)
            return
        why = None
        if (env.sender, env.epoch) != holder:
            why, counter = f"{self.me} sees {holder[0]} hold at epoch {holder[1]}", "not_holder"
        elif run.topic == PROBE_TOPIC:  # the way proved; the agent never sees a probe
            self.count("pool.probes")
            self.answer(RunFinished(run, env.sender, (PROBE_TEXT,), None), members)
            return
        elif self.run is None:
            why, counter = f"{NO_AGENT}{self.me} runs no agent", "no_agent"
        elif len(self.running) + len(self.pulling) >= MAX_RUNNING and run not in self.running:
            why, counter = f"{self.me} runs {MAX_RUNNING} already", "busy"
        if why is not None:
            self.count(f"pool.refused.{counter}")
            self.answer(RunFinished(run, env.sender, None, REFUSED + why), members)
            return
        if run in self.running or run in self.pulling:
            self.count("pool.repeats")
            return
        if pull and self.sync is not None:  # the topic is new here: its state first
            self.pulling[run] = (env.sender, message, history, now)
            log.info("pool: %s is new here: its state is pulled first", run.key)
            self.sync(("run", run))
            return
        self.start(run, env.sender, message, history)

    def release(self, env: Envelope, holder: tuple[str | None, int]) -> None:
        """The holder asks for a topic's state (it moves elsewhere): this machine's
        changes are queued (StateSync), then ``pool_released`` says so."""
        topic = env.body["topic"]
        if (env.sender, env.epoch) != holder or not 0 < len(topic) <= MAX_ID_CHARS:
            self.count("pool.refused.release")
        elif self.sync is None:
            self.transport.send_release(env.sender, env.epoch, topic, done=True)
        else:
            self.sync(("release", env.sender, env.epoch, topic))

    def synced(self, what: tuple[Any, ...], holder: tuple[str | None, int], now: float) -> None:
        """This machine's StateSync step for ``what`` is done (``holder``: who this
        machine's lease view says holds now)."""
        match what:
            case ("run", run):  # the agent's state is pulled: the run waiting on it starts
                self._go_on(run, holder, now)
            case ("release", holder, epoch, topic):
                self.transport.send_release(holder, epoch, topic, done=True)

    def tick(self, holder: tuple[str | None, int], now: float) -> None:
        """A run that waited PULL_MS for its topic's state runs without it."""
        for run, (*_, since) in list(self.pulling.items()):
            if now - since >= PULL_MS:
                self.count("pool.pull_late")
                self._go_on(run, holder, now, late=True)

    def _go_on(
        self, run: TopicRun, holder: tuple[str | None, int], now: float, late: bool = False
    ) -> None:
        """``run`` waited for its topic's state: it starts, if the holder that asked
        still holds (else the new holder places it again)."""
        waiting = self.pulling.pop(run, None)
        if waiting is None:
            return  # ran already (its time was up), or never waited here
        asker, message, history, since = waiting
        if (asker, run.term) == holder:
            log.log(logging.WARNING if late else logging.INFO,
                    "pool: %s's state %s in %.0f ms: it runs", run.key,
                    "not pulled" if late else "pulled", now - since)  # fmt: skip
            self.start(run, asker, message, history)
        else:
            self.count("pool.refused.not_holder")

    def start(
        self, run: TopicRun, asker: str, message: AgentMessage, history: Sequence[Turn]
    ) -> None:
        assert self.run is not None
        self.running.add(run)
        if asker != self.me:
            self.count("pool.ran")  # a run for the holder, here
        self.run(message, history, lambda r: self.finished(RunFinished(run, asker, *r)))

    def answer(self, done: RunFinished, members: Mapping[str, MachineEntry]) -> None:
        """Send a peer's run's result back to the machine that asked."""
        self.running.discard(done.run)
        peer = members.get(done.asker)
        if peer is None:
            self.count("pool.result_unsent")
            return
        recipient = peer.identity.encryption_public
        try:
            sent = self.transport.send_result(
                done.asker, done.run, recipient, done.replies, done.error
            )
            if not sent:
                self.count("pool.result_unsent")
        except ValueError as exc:  # past the frame limit: say so instead
            self.count("pool.too_big")
            log.error("pool: the result of %s is too big to send: %s", done.run.key, exc)
            why = "the replies are too big for the wire"
            self.transport.send_result(done.asker, done.run, recipient, None, why)
