"""PoolActor: the pool on one machine (docs/DESIGN.md, "The pool").

Its state. The holder alone changes the pool's state (on or off, pins, placements),
each change a new version under its lease epoch, kept in its TopicPlacementPinStore and
sent to every member at once and again every RESEND_MS (a member that missed one, or
joined since, catches up). A standby takes a state only from the machine its lease
view says holds, at that epoch, and keeps it only if it is newer (by term, then
version): so a new holder starts from the last state its predecessor sent, and a
deposed holder's late state never overwrites a newer one.

Its work. On the holder, with the pool on, delivery's agent runs come here
(``RouteRun``) and go through the SessionRouter (baton.actors.pool_routing), here or on
the topic's machine; with the pool off, or before this machine's lease view says it
holds at the run's term, a run is delivery's own, in the agent pool, as without a pool.
A holder that stands by at its own epoch (suspended itself, yielded, fenced, stopping)
keeps its router and takes the results of its runs out, sending nothing new (a run the
router hands out meanwhile is taken back); renewed at the same epoch it goes on, as
delivery does; another holder or a new term drops it.
On every machine the runner (baton.actors.pool_runner) runs the TopicRuns the holder
places here. The MachinePoolRegistry hears of each peer through the peer monitor's
pongs (``Heard``), on this machine's clock.

A peer's bytes are decoded strictly; whatever is refused is logged, counted
(``pool.refused.*``) and dropped. A store that fails is counted (``pool.errors``) and
logged; the actor lives on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import nacl.public
import pykka

from baton.actors.delivery_messages import AgentDone
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.pool_messages import (
    AgentJobs,
    GetPool,
    Heard,
    PoolConfig,
    RouteRun,
    RunFinished,
    SetPool,
    StateSynced,
)
from baton.actors.pool_mirror import PoolMirror
from baton.actors.pool_probe import PoolProbes
from baton.actors.pool_queries import Asked, Query, answer, answer_peer, failed, machines
from baton.actors.pool_routing import PoolRouting, Waiting
from baton.actors.pool_runner import NO_AGENT, REFUSED, PoolRunner
from baton.actors.state_sync_actor import SyncNow
from baton.adapters.metrics import Counters
from baton.agents.base import AgentMessage, Turn
from baton.core.clock import Clock
from baton.core.errors import (
    PoolDisabled,
    PoolError,
    PoolNotHolder,
    PoolRefused,
)
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.pool_commands import RelocationNicknameSet
from baton.core.pool_router import MachinePoolRegistry, SessionRouter, TopicRun
from baton.core.pool_state import TopicPlacementPinStore
from baton.core.registry import MachineEntry
from baton.wire.envelope import new_message_id
from baton.wire.pool_transport import PoolTransport, open_result

log = logging.getLogger("baton.pool")

ROUTES = ("pool_state", "pool_run", "pool_result", "pool_hello", "pool_ask", "pool_answer",
          "pool_release", "pool_released")  # fmt: skip
RESEND_MS = 5000
CHANGE_SEND_MS = 200  # a change of pins or placements goes out within this
MAX_BOOT_CHARS = 64
OFF = "the pool is off: `baton pool enable` on the awake machine"


class PoolActor(pykka.ThreadingActor):
    def __init__(
        self,
        me: str,
        *,
        store: TopicPlacementPinStore,
        transport: PoolTransport,
        counters: Counters,
        clock: Clock | None = None,
        nickname: str = "",
        key: nacl.public.PrivateKey | None = None,
        config: PoolConfig | None = None,
        jobs: AgentJobs | None = None,
        delivery: Callable[[AgentDone], None] | None = None,
        state: Callable[[SyncNow], None] | None = None,
    ) -> None:
        super().__init__()
        self.me = me
        self.nickname = nickname or me
        self.transport = transport
        self.counters = counters
        self.clock = clock
        self.config = config or PoolConfig(ttl_ms=10_000, run_timeout_ms=60_000)
        self.jobs = jobs
        self.delivery = delivery
        self.members: dict[str, MachineEntry] = {}
        self.holder: tuple[str | None, int] = (None, 0)
        self.holding = False
        self.next_send = 0.0
        self.next_hello = 0.0
        self.boot = new_message_id(transport.rng)  # this run of the process
        self.mirror = PoolMirror(store, transport, counters)
        self.registry = MachinePoolRegistry()
        self.routing: PoolRouting | None = None
        self.asked = Asked(transport)  # this machine's questions the holder has not answered
        self.probes = PoolProbes()  # the holder's end-to-end check
        self.state = state  # tells this machine's StateSyncActor (None: no state sync)
        self.runner = PoolRunner(
            me,
            key=key or nacl.public.PrivateKey.generate(),
            transport=transport,
            run=None if jobs is None else jobs.run,
            finished=self.actor_ref.tell,
            count=counters.inc,
            sync=None if state is None else self._sync,
        )

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *failure: object) -> None:
        self._close()

    def _close(self) -> None:
        try:
            self.mirror.store.close()
        except PoolError as exc:
            log.warning("pool: closing %r: %s", self.mirror.store, exc.detail)

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        except (PoolNotHolder, PoolDisabled):
            raise
        except PoolError as exc:  # the disk: this step is lost, the actor lives on
            self.counters.inc("pool.errors")
            log.error("pool: %s failed: %s", type(message).__name__, exc.detail)
            if isinstance(message, Query):
                message.reply(failed(exc))
            if isinstance(message, SetPool | GetPool):
                raise
            return None

    def _now(self) -> float:
        return 0.0 if self.clock is None else self.clock.monotonic_ms()

    def _receive(self, message: Any) -> Any:
        match message:
            case Tick(now_ms=now):
                self._tick(now)
            case LeaseChanged(phase=phase, holder=holder, epoch=epoch):
                self._lease(phase is Phase.HOLDING, holder, epoch)
            case MembersChanged(peers=peers):
                self._members(peers)
            case Heard(machine_id=peer, now_ms=now) if peer in self.members:
                self.registry.heard(peer, self.members[peer].identity.nickname, now)
            case Heard():
                pass  # not a member (any more)
            case EnvelopeReceived(envelope=env) if env.type == "pool_state":
                self.mirror.received(env, None if self.holding else self.holder)
            case EnvelopeReceived(envelope=env) if env.type == "pool_run":
                self.runner.received(env, self.holder, self.members, self._now())
            case EnvelopeReceived(envelope=env) if env.type == "pool_result":
                self._result(env)
            case EnvelopeReceived(envelope=env) if env.type in ("pool_release", "pool_released"):
                self._release(env)
            case StateSynced(what=what):
                self._synced(what)
            case EnvelopeReceived(envelope=env) if env.type == "pool_hello":
                self._hello(env)
            case RouteRun():
                self._route(message)
            case RunFinished():
                self._finished(message)
            case SetPool(enabled=enabled):
                return self._set(enabled)
            case GetPool():
                return self._view()
            case Query():
                self._query(message)
            case EnvelopeReceived(envelope=env) if env.type == "pool_ask":
                answer_peer(env, self.members, self._answer, self.transport, self.counters.inc)
            case EnvelopeReceived(envelope=env) if env.type == "pool_answer":
                self.asked.received(env, self.holder[0], self.counters.inc)
            case _:
                raise TypeError(f"PoolActor: unexpected message {message!r}")
        return None

    # --- the lease, the members, time -------------------------------------------------

    def _lease(self, holding: bool, holder: str | None, epoch: int) -> None:
        # A holder that suspended itself and is renewed at the same epoch goes on with
        # the runs it had out, as delivery goes on waiting for them; a new term drops them.
        routing = self.routing
        kept = routing is not None and (holder, epoch) == (self.me, routing.router.term)
        began = holding and not kept
        new = (holder, epoch) != self.holder
        self.holder = (holder, epoch)
        self.holding = holding
        if new and not holding and holder is not None:  # a new holder hears it at once
            self._say_hello(self._now())
        if began:
            self.next_send = 0.0  # a new holder sends what it has at its next tick
            self.mirror.restamp(epoch)
            router = SessionRouter.restore(
                epoch,
                self.registry,
                ttl_ms=self.config.ttl_ms,
                run_timeout_ms=self.config.run_timeout_ms,
                placements=self.mirror.state.placements,
                pins=self.mirror.state.pins,
            )
            self.routing = PoolRouting(
                self.me,
                router,
                run_here=self._run_here,
                run_there=self._run_there,
                release=lambda machine, topic: self.transport.send_release(machine, epoch, topic),
                sync=None if self.state is None else lambda run: self._sync(("handoff", run)),
                done=self._done,
                count=self.counters.inc,
            )
        elif not kept:
            self.routing = None  # delivery forgets its runs of that term too
        if self.routing is not None:
            self.routing.active = holding

    def _members(self, peers: tuple[MachineEntry, ...]) -> None:
        self.members = {p.machine_id: p for p in peers}
        for machine_id in list(self.registry.machines):
            if machine_id != self.me and machine_id not in self.members:
                self.registry.left(machine_id)

    def _tick(self, now: float) -> None:
        self.registry.heard(self.me, self.nickname, now)
        self.runner.tick(self.holder, now)
        self.asked.expire(now)
        self.probes.tick(now)
        if self.routing is not None and self.holding:  # (suspended: nothing is placed)
            self.routing.tick(now)
            self._keep_routes()
        if self.holding and now >= self.next_send:
            self.next_send = now + RESEND_MS
            self.mirror.send_all(self.members, self.holder[1])
        if not self.holding and self.holder[0] is not None and now >= self.next_hello:
            self._say_hello(now)

    def _say_hello(self, now: float) -> None:
        """This run of the process, and whether it runs an agent, to the holder."""
        holder, epoch = self.holder
        assert holder is not None
        self.next_hello = now + RESEND_MS
        self.transport.send_hello(holder, epoch, self.boot, agent=self.runner.run is not None)

    # --- the pool's state -------------------------------------------------------------

    def _set(self, enabled: bool) -> dict[str, Any]:
        holder, epoch = self.holder
        if not self.holding:
            raise PoolNotHolder(f"only the holder changes the pool: ask {holder or 'nobody yet'}")
        self.mirror.set(enabled, epoch, self.members)
        return self._view()

    def _keep_routes(self) -> None:
        """The router's pins and placements kept, and sent soon, when they changed."""
        if self.routing is not None and self.mirror.keep_routes(
            *self.routing.kept(), self.holder[1]
        ):
            self.next_send = min(self.next_send, self._now() + CHANGE_SEND_MS)

    # --- runs -------------------------------------------------------------------------

    def _route(self, r: RouteRun) -> None:
        routing = self.routing
        if not self.mirror.state.enabled or routing is None or routing.router.term != r.epoch:
            if routing is not None:  # run here: this tree has the topic's latest state
                routing.handoffs.owners[r.entry.topic] = self.me
            if self.jobs is not None:
                self.jobs.agent(r.token, r.entry, r.history)
            return
        now = self._now()
        names = {m.identity.nickname: i for i, m in self.members.items()}
        wall = 0.0 if self.clock is None else self.clock.wall_s()
        nicknames = RelocationNicknameSet(names, self.nickname, self.me)
        routing.route(Waiting(r.token, r.entry, r.history), nicknames, now, wall)
        self._keep_routes()

    def _run_here(self, run: TopicRun, wait: Waiting) -> None:
        if self.runner.run is None:  # no agent here: nothing can run it (not reached)
            self._done(AgentDone(wait.token, wait.entry.key, None, "no agent on the holder"))
            return
        self.runner.start(run, self.me, wait.message(), wait.history)

    def _run_there(self, run: TopicRun, wait: Waiting, pull: bool) -> bool:
        message = wait.message()
        try:
            if self.transport.fits(message):
                return self._send_run(run, message, wait.history, pull)
        except ValueError as exc:  # past the frame limit all the same
            log.error("pool: the run of %s is too big to send: %s", run.key, exc)
        # never: a result says why (delivery retries, then answers that it failed)
        self.counters.inc("pool.too_big")
        if self.routing is not None:
            self.routing.finished(run, None, "the message is too big for the wire", self._now())
        return True

    def _send_run(
        self, run: TopicRun, message: AgentMessage, history: tuple[Turn, ...], pull: bool = False
    ) -> bool:
        """Sent (False: not; ValueError past the frame limit)."""
        peer = self.members.get(run.machine_id)
        if peer is None:
            return False
        recipient = peer.identity.encryption_public
        return self.transport.send_run(run, recipient, message, history, pull=pull)

    def _done(self, done: AgentDone) -> None:
        if self.delivery is not None:
            self.delivery(done)

    def _finished(self, done: RunFinished) -> None:
        if done.asker != self.me:
            self.runner.answer(done, self.members)
            return
        self.runner.running.discard(done.run)
        self._took(done.run, done.replies, done.error)

    def _result(self, env: Any) -> None:
        try:
            run, replies, error = open_result(env, self.runner.key)
        except PoolRefused as exc:
            self.counters.inc("pool.refused.malformed")
            log.warning("pool: a result from %s refused: %.300s", env.sender, exc.detail)
            return
        self._took(run, replies, error)

    # --- a topic's agent state follows it (baton.actors.pool_handoff) -------------------

    def _sync(self, what: tuple[Any, ...]) -> None:
        """This machine's StateSync step now; then ``what`` goes on (StateSynced)."""
        assert self.state is not None
        done = StateSynced(what)
        try:
            self.state(SyncNow(reply=lambda: self.actor_ref.tell(done)))
        except pykka.ActorDeadError:  # the node is stopping: go on without
            self.actor_ref.tell(done)

    def _synced(self, what: tuple[Any, ...]) -> None:
        if what[0] != "handoff":
            self.runner.synced(what, self.holder, self._now())
        elif self.routing is not None:
            self.routing.handoffs.synced(what[1], self._now())

    def _release(self, env: Any) -> None:
        if env.type == "pool_release":
            self.runner.release(env, self.holder)
        elif self.routing is not None and env.epoch == self.holder[1]:
            self.routing.handoffs.released(env.sender, env.body["topic"], self._now())

    def _hello(self, env: Any) -> None:
        boot = env.body["boot"]
        ok = self.routing is not None and env.epoch == self.holder[1] and env.sender in self.members
        if not ok or not 0 < len(boot) <= MAX_BOOT_CHARS:
            self.counters.inc("pool.refused.hello")
        else:
            self.registry.able(env.sender, env.body["agent"])  # no agent: never placed on
            if self.routing is not None and self.routing.booted(env.sender, boot):
                log.warning("pool: %s restarted: its runs are placed again", env.sender)

    def _took(self, run: TopicRun, replies: tuple[str, ...] | None, error: str | None) -> None:
        routing = self.routing
        if routing is None or run.term != routing.router.term:
            self.counters.inc("pool.refused.stale")
            return
        now = self._now()
        if self.probes.took(run, replies, error, now):
            return
        if error is not None and error.startswith(REFUSED):
            log.info("pool: %s refused %s: %s", run.machine_id, run.key, error)
            if error.startswith(REFUSED + NO_AGENT):
                self.registry.able(run.machine_id, False)  # until it says otherwise
            routing.refused(run, now)
        else:
            routing.finished(run, replies, error, now)
        self._keep_routes()

    # --- questions (HTTP, CLI): the holder answers, the others ask it -------------------

    def _routing(self) -> PoolRouting:
        if not self.mirror.state.enabled:
            raise PoolDisabled(OFF)
        if self.routing is None or not self.holding:
            holder = self.holder[0]
            raise PoolNotHolder(f"only the holder moves topics: ask {holder or 'nobody yet'}")
        return self.routing

    def _answer(self, op: str, args: dict[str, Any], by: str) -> dict[str, Any]:
        try:
            routing = self._routing()
        except (PoolDisabled, PoolNotHolder) as exc:
            return failed(exc)
        if op in ("verify", "e2e"):
            if op == "verify":
                now, wall = self._now(), 0.0 if self.clock is None else self.clock.wall_s()
                alive = [m["machine_id"] for m in machines(routing, now) if m["alive"]]
                self.probes.verify(
                    self.me, alive, routing.router.term, now=now, wall_s=wall, send=self._send_run
                )
            return {"ok": self.probes.view()}
        wall = 0.0 if self.clock is None else self.clock.wall_s()
        said = answer(op, args, routing, view=self._view(), by=by, now=self._now(), wall_s=wall)
        self._keep_routes()
        if op == "transfer" and "ok" in said:
            self.next_send = 0.0  # a pin goes out at the next tick
        return said

    def _query(self, q: Query) -> None:
        holder, epoch = self.holder
        if self.holding or holder is None:
            q.reply(self._answer(q.op, q.args, self.me))
        elif not self.mirror.state.enabled:  # what this machine mirrors: no need to ask
            q.reply(failed(PoolDisabled(OFF)))
        else:
            self.asked.ask(q, holder, epoch, self._now())

    def _view(self) -> dict[str, Any]:
        state = self.mirror.state
        view: dict[str, Any] = {
            "enabled": state.enabled,
            "term": state.term,
            "version": state.version,
            "pins": len(state.pins),
            "placements": len(state.placements),
            "role": "holder" if self.holding else "mirror",
        }
        if self.routing is not None:
            view["routing"] = self.routing.view(self._now())
        return view
