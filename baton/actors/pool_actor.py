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
    Describe,
    GetPool,
    Heard,
    PoolConfig,
    RouteRun,
    RunFinished,
    SetPool,
    Transfer,
    Unpin,
)
from baton.actors.pool_routing import PoolRouting, Waiting
from baton.actors.pool_runner import REFUSED, PoolRunner
from baton.adapters.metrics import Counters
from baton.core.clock import Clock
from baton.core.errors import PoolDisabled, PoolError, PoolNotHolder, PoolRefused
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.pool_commands import RelocationNicknameSet
from baton.core.pool_router import MachinePoolRegistry, SessionRouter, TopicRun
from baton.core.pool_state import PoolState, TopicPlacementPinStore
from baton.core.pool_transfer import TransferPlan, TransferRequest
from baton.core.registry import MachineEntry
from baton.wire.envelope import new_message_id
from baton.wire.pool_transport import PoolTransport, open_result, open_state

log = logging.getLogger("baton.pool")

ROUTES = ("pool_state", "pool_run", "pool_result", "pool_hello")
RESEND_MS = 5000
CHANGE_SEND_MS = 200  # a change of pins or placements goes out within this
MAX_BOOT_CHARS = 64


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
    ) -> None:
        super().__init__()
        self.me = me
        self.nickname = nickname or me
        self.store = store
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
        self.state = store.load()
        self.registry = MachinePoolRegistry()
        self.routing: PoolRouting | None = None
        self.runner = PoolRunner(
            me,
            key=key or nacl.public.PrivateKey.generate(),
            transport=transport,
            run=None if jobs is None else jobs.run,
            finished=self.actor_ref.tell,
            count=counters.inc,
        )

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *failure: object) -> None:
        self._close()

    def _close(self) -> None:
        try:
            self.store.close()
        except PoolError as exc:
            log.warning("pool: closing %r: %s", self.store, exc.detail)

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        except (PoolNotHolder, PoolDisabled):
            raise
        except PoolError as exc:  # the disk: this step is lost, the actor lives on
            self.counters.inc("pool.errors")
            log.error("pool: %s failed: %s", type(message).__name__, exc.detail)
            if isinstance(message, SetPool | GetPool | Transfer | Unpin | Describe):
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
                self._received(env)
            case EnvelopeReceived(envelope=env) if env.type == "pool_run":
                self.runner.received(env, self.holder, self.members)
            case EnvelopeReceived(envelope=env) if env.type == "pool_result":
                self._result(env)
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
            case Transfer(request=request):
                return self._transfer(request)
            case Unpin(topic=topic):
                routing = self._routing()
                found = routing.unpin(topic, self._now())
                self._keep_routes()
                return {"topic": topic, "unpinned": found}
            case Describe(topic=topic):
                return self._describe(topic)
            case _:
                raise TypeError(f"PoolActor: unexpected message {message!r}")
        return None

    # --- the lease, the members, time -------------------------------------------------

    def _lease(self, holding: bool, holder: str | None, epoch: int) -> None:
        began = holding and (not self.holding or epoch != self.holder[1])
        if (holder, epoch) != self.holder:
            self.next_hello = 0.0  # a new holder hears this machine's boot at once
        self.holder = (holder, epoch)
        self.holding = holding
        if began:
            self.next_send = 0.0  # a new holder sends what it has at its next tick
            self._restamp(epoch)
            router = SessionRouter.restore(
                epoch,
                self.registry,
                ttl_ms=self.config.ttl_ms,
                run_timeout_ms=self.config.run_timeout_ms,
                placements=self.state.placements,
                pins=self.state.pins,
            )
            self.routing = PoolRouting(
                self.me,
                router,
                run_here=self._run_here,
                run_there=self._run_there,
                done=self._done,
                count=self.counters.inc,
            )
        elif not holding:
            self.routing = None  # delivery forgets its runs of that term too

    def _members(self, peers: tuple[MachineEntry, ...]) -> None:
        self.members = {p.machine_id: p for p in peers}
        for machine_id in list(self.registry.machines):
            if machine_id != self.me and machine_id not in self.members:
                self.registry.left(machine_id)

    def _tick(self, now: float) -> None:
        self.registry.heard(self.me, self.nickname, now)
        if self.routing is not None:
            self.routing.tick(now)
            self._keep_routes()
        if self.holding and now >= self.next_send:
            self.next_send = now + RESEND_MS
            self._send_all()
        holder, epoch = self.holder
        if not self.holding and holder is not None and now >= self.next_hello:
            self.next_hello = now + RESEND_MS
            self.transport.send_hello(holder, epoch, self.boot)

    # --- the pool's state -------------------------------------------------------------

    def _keep(self, state: PoolState) -> bool:
        kept = self.store.keep(state)
        if kept:
            self.state = state
        return kept

    def _set(self, enabled: bool) -> dict[str, Any]:
        holder, epoch = self.holder
        if not self.holding:
            raise PoolNotHolder(f"only the holder changes the pool: ask {holder or 'nobody yet'}")
        # a new version even when it changes nothing here: a mirror that still holds an
        # older holder's other answer takes this one
        self._keep(self.state.changed(epoch, enabled=enabled))
        self.counters.inc("pool.changes")
        log.info("pool: turned %s at epoch %d", "on" if enabled else "off", epoch)
        self._send_all()
        return self._view()

    def _restamp(self, epoch: int) -> None:
        """A new holder makes what it holds its own: the same state at its term, so
        every mirror takes it over whatever an older holder sent them."""
        if self.state != PoolState() and self.state.term < epoch:
            self._keep(self.state.changed(epoch))

    def _keep_routes(self) -> None:
        """The router's pins and placements kept and sent, when they changed."""
        if self.routing is None:
            return
        pins, placements = self.routing.kept()
        if pins == self.state.pins and placements == self.state.placements:
            return
        self._keep(self.state.changed(self.holder[1], pins=pins, placements=placements))
        self.next_send = min(self.next_send, self._now() + CHANGE_SEND_MS)

    def _send_all(self) -> None:
        if self.state == PoolState():
            return  # nothing was ever set: nothing to mirror
        for peer in sorted(self.members):
            try:
                self.transport.send_state(peer, self.holder[1], self.state)
            except ValueError as exc:  # past the frame limit
                self.counters.inc("pool.too_big")
                log.error("pool: the state is too big to send: %s", exc)
                return

    def _received(self, env: Any) -> None:
        holder, epoch = self.holder
        if self.holding or env.sender != holder or env.epoch != epoch:
            self.counters.inc("pool.refused.not_holder")
            return
        try:
            state = open_state(env)
        except PoolRefused as exc:  # from_json refuses anything else it meets
            self.counters.inc("pool.refused.malformed")
            log.warning("pool: a state from %s refused: %.300s", env.sender, exc.detail)
            return
        if self._keep(state):
            self.counters.inc("pool.kept")

    # --- runs -------------------------------------------------------------------------

    def _route(self, r: RouteRun) -> None:
        routing = self.routing
        if not self.state.enabled or routing is None or routing.router.term != r.epoch:
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

    def _run_there(self, run: TopicRun, wait: Waiting) -> bool:
        peer = self.members.get(run.machine_id)
        if peer is None:
            return False
        recipient = peer.identity.encryption_public
        try:
            return self.transport.send_run(run, recipient, wait.message(), wait.history)
        except ValueError as exc:  # the message alone past the frame limit
            self.counters.inc("pool.too_big")
            log.error("pool: the run of %s is too big to send: %s", run.key, exc)
            return False

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

    def _hello(self, env: Any) -> None:
        boot = env.body["boot"]
        ok = self.holding and env.epoch == self.holder[1] and env.sender in self.members
        if not ok or self.routing is None or not 0 < len(boot) <= MAX_BOOT_CHARS:
            self.counters.inc("pool.refused.hello")
            return
        if self.routing.booted(env.sender, boot):
            log.warning("pool: %s restarted: its runs are placed again", env.sender)

    def _took(self, run: TopicRun, replies: tuple[str, ...] | None, error: str | None) -> None:
        routing = self.routing
        if routing is None or run.term != routing.router.term:
            self.counters.inc("pool.refused.stale")
            return
        now = self._now()
        if error is not None and error.startswith(REFUSED):
            log.info("pool: %s refused %s: %s", run.machine_id, run.key, error)
            routing.refused(run, now)
        else:
            routing.finished(run, replies, error, now)
        self._keep_routes()

    # --- moves and views --------------------------------------------------------------

    def _routing(self) -> PoolRouting:
        if not self.state.enabled:
            raise PoolDisabled("the pool is off: `baton pool enable` on the awake machine")
        if self.routing is None:
            holder = self.holder[0]
            raise PoolNotHolder(f"only the holder moves topics: ask {holder or 'nobody yet'}")
        return self.routing

    def _transfer(self, request: TransferRequest) -> dict[str, Any]:
        routing = self._routing()
        wall = 0.0 if self.clock is None else self.clock.wall_s()
        answer = routing.transfer(request, self._now(), wall)
        self._keep_routes()
        if isinstance(answer, TransferPlan):
            self.next_send = 0.0  # a pin goes out at the next tick
        return answer.to_json()

    def _describe(self, topic: str | None) -> Any:
        routing = self._routing()
        now = self._now()
        if topic is not None:
            return routing.describe(topic, now).to_json()
        ttl = routing.router.ttl_ms
        return [
            {**m.__dict__, "alive": m.alive(now, ttl), "holder": i == self.me}
            for i, m in sorted(routing.machines(now).items())
        ]

    def _view(self) -> dict[str, Any]:
        state = self.state
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
