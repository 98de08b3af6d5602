"""NodeServices: the facade through which the HTTP app reaches the running node.

The HTTP layer imports neither zmq nor git; it calls these methods, which ask the
actors and wait on their futures with a timeout (HTTP views may wait; actors may
not). A timeout becomes Unavailable (503), never a hung request.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from typing import Any

import pykka

from baton import PROTOCOL_VERSION, __version__
from baton.actors.delivery_messages import GetDelivery, GetUserMessage, QueueUserMessage
from baton.actors.features_actor import GetFeatures, SetFeature
from baton.actors.handoff_messages import GetHandoff, Wakeup
from baton.actors.lease_actor import GetLease
from baton.actors.messages import (
    AddMachine,
    GetPeerReports,
    GetSelf,
    ListMachines,
    RevokeMachine,
)
from baton.actors.pool_messages import GetPool, SetPool
from baton.actors.pool_queries import ASK_TIMEOUT_MS, Query, check, raise_for
from baton.actors.state_sync_actor import StateView
from baton.actors.tail_messages import GetTail
from baton.adapters.metrics import Counters
from baton.build import THIS
from baton.core.clock import Clock
from baton.core.errors import BadRequest, BatonError, NotFound, Unavailable, WakeupFailed
from baton.core.features import check_name
from baton.core.handoff import may_retry
from baton.core.identity import PublicIdentity
from baton.core.registry import MachineEntry, Role
from baton.core.settings import Settings
from baton.core.ui_login import UiLogins, session_key
from baton.node.views import features_view, identity_view, machine_view, mesh_versions_view
from baton.pairing.host import PairingService
from baton.pairing.membership import verify_leave

log = logging.getLogger("baton.handoff")

#: A wakeup that failed for a reason that passes (the target still catching up, a busy
#: host) is tried again for this long; each failed attempt left the old holder awake.
WAKEUP_PATIENCE_S = 60.0
RETRY_PAUSE_S = 0.5
#: How long the status page waits for the pool's topics (a standby asks the holder); it
#: looks again in 2 s, and a page must not wait out a failover.
UI_POOL_WAIT_S = 1.5


@dataclass(frozen=True)
class NodeActors:
    """The running node's actors that NodeServices asks (None: that part is off)."""

    registry: pykka.ActorRef[Any]
    peers: pykka.ActorRef[Any]
    pairing: pykka.ActorRef[Any]
    lease: pykka.ActorRef[Any] | None = None
    delivery: pykka.ActorRef[Any] | None = None
    tail: pykka.ActorRef[Any] | None = None
    handoff: pykka.ActorRef[Any] | None = None
    state: StateView | None = None  # read directly: the actor may be busy pulling
    pool: pykka.ActorRef[Any] | None = None
    features: pykka.ActorRef[Any] | None = None


class NodeServices:
    def __init__(
        self,
        *,
        me: PublicIdentity,
        settings: Settings,
        api_token: str,
        actors: NodeActors,
        counters: Counters,
        clock: Clock,
        home: str,
        endpoints: Mapping[str, str],
        dialed: Callable[[], Mapping[str, str]] = dict,
        timeout_s: float = 5.0,
        restart: Mapping[str, Any] | None = None,
    ) -> None:
        self.me = me
        self.restart = restart  # how the restart that started this node was judged
        self.settings = settings
        self._token = api_token.encode()
        self.logins = UiLogins(session_key(api_token))
        self.registry = actors.registry
        self.peers = actors.peers
        self.lease = actors.lease
        self.delivery = actors.delivery
        self.tail = actors.tail
        self.handoff = actors.handoff
        self.state = actors.state
        self.pool_ref = actors.pool
        self.features_ref = actors.features
        self.counters = counters
        self.clock = clock
        self.home = home
        self.endpoints = dict(endpoints)
        self.dialed = dialed  # machine id -> the endpoint its link is connected on
        self.timeout_s = timeout_s
        self.started_ms = clock.monotonic_ms()
        self.pairing = PairingService(
            actors.pairing,
            actors.registry,
            self._ask,
            lambda: {
                "lease_store": settings.lease_store or None,
                "channel": settings.channel or None,
                "agent": settings.agent,
                "agent_sandbox": settings.agent_sandbox,
            },
            lambda: self._ask(actors.registry, GetSelf()).http,
        )

    def token_ok(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self._token)

    def _ask(self, ref: pykka.ActorRef[Any], message: Any) -> Any:
        try:
            return ref.ask(message, timeout=self.timeout_s)
        except pykka.Timeout:
            raise Unavailable(f"the node did not answer within {self.timeout_s} s") from None
        except pykka.ActorDeadError:
            raise Unavailable("the node is shutting down") from None

    def health(self) -> dict[str, Any]:
        return {"ok": True, "machine_id": self.me.machine_id, "pid": os.getpid()}

    def whoami(self) -> dict[str, Any]:
        entry: MachineEntry = self._ask(self.registry, GetSelf())
        return {
            **identity_view(self.me),
            "role": entry.role.value,
            "running": True,
            "home": self.home,
            "pid": os.getpid(),
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            **self.endpoints,
        }

    def machines(self) -> list[dict[str, Any]]:
        entries = self._ask(self.registry, ListMachines())
        now = self.clock.wall_s()
        seen = {
            r.machine_id: now - r.last_seen_ms_ago / 1000.0
            for r in self._ask(self.peers, GetPeerReports())
            if r.last_seen_ms_ago is not None
        }
        seen[self.me.machine_id] = now
        return [machine_view(e, self.me.machine_id, seen.get(e.machine_id)) for e in entries]

    def add_machine(self, card: Mapping[str, Any]) -> dict[str, Any]:
        entry = self._ask(self.registry, AddMachine(card))
        return machine_view(entry, self.me.machine_id)

    def status(self) -> dict[str, Any]:
        me: MachineEntry = self._ask(self.registry, GetSelf())
        entries = {e.machine_id: e for e in self._ask(self.registry, ListMachines())}
        peers = []
        via = self.dialed()
        for report in self._ask(self.peers, GetPeerReports()):
            view = asdict(report)
            said = view.pop("versions")  # as its pings say, live
            view["version"] = None if said is None else said["baton"]
            entry = entries.get(report.machine_id)
            view["nickname"] = entry.nickname if entry else None
            view["wire"] = entry.wire if entry else None
            view["endpoints"] = list(entry.endpoints) if entry else []
            view["via"] = via.get(report.machine_id)  # the endpoint it answers on
            peers.append(view)
        return {
            "machine_id": self.me.machine_id,
            "nickname": self.me.nickname,
            **self._lease(me, entries),
            "lease_store": self.settings.lease_store or None,
            "delivery": None if self.delivery is None else self._ask(self.delivery, GetDelivery()),
            "tail": None if self.tail is None else self._ask(self.tail, GetTail()),
            "handoff": None if self.handoff is None else self._ask(self.handoff, GetHandoff()),
            "state": None if self.state is None else dict(self.state.current),
            "pool": None if self.pool_ref is None else self._ask(self.pool_ref, GetPool()),
            "features": self._flags(),
            "peers": peers,
            "uptime_s": round((self.clock.monotonic_ms() - self.started_ms) / 1000.0, 3),
            "pid": os.getpid(),
            "version": __version__,
            "versions": mesh_versions_view(self.me.machine_id, THIS, entries.values()),
            "restart": self.restart,
            **self.endpoints,
            "wire": me.wire,
            "http": me.http,
            "endpoints": list(me.endpoints),
            "counters": self.counters.snapshot(),
        }

    def ui_login(self) -> dict[str, Any]:
        """A one-time login path for the status page (`baton ui` puts the address in
        front)."""
        code = secrets.token_urlsafe(32)
        expires = self.logins.mint(code, self.clock.wall_s())
        self.counters.inc("ui.logins_minted")
        # a path: the node may listen on a port picked at start (--http HOST:0), which
        # the caller knows from the run file, as it knew where to ask
        return {"path": f"/login?code={code}", "expires_in_s": round(expires - self.clock.wall_s())}

    def ui_redeem(self, code: str) -> str | None:
        session = self.logins.redeem(code, secrets.token_urlsafe(16), self.clock.wall_s())
        self.counters.inc("ui.logins" if session else "ui.logins_refused")
        return session

    def ui_session_ok(self, session: str) -> bool:
        return self.logins.session_ok(session, self.clock.wall_s())

    def ui_view(self) -> dict[str, Any]:
        """What the status page shows: the status, and the pool's topics when it is on
        (or why they cannot be shown)."""
        status = self.status()
        pool: dict[str, Any] | None = None
        if (status.get("pool") or {}).get("enabled"):
            try:  # briefly: during a failover the holder a standby asks may be gone
                pool = self._pool_query("pool", {}, UI_POOL_WAIT_S)
            except BatonError as exc:
                pool = {"error": exc.code, "detail": exc.detail}
        return {"status": status, "pool": pool}

    def _pool_actor(self) -> pykka.ActorRef[Any]:
        if self.pool_ref is None:
            raise Unavailable("the pool needs a lease store (baton init --lease-store ...)")
        return self.pool_ref

    def pool_ask(self, op: str, **args: Any) -> Any:
        """A question for the pool (baton.actors.pool_queries), answered by the holder:
        this machine's PoolActor asks it over the wire unless it holds. BadRequest for a
        malformed one; PoolDisabled (503) while the pool is off; the holder's refusals as
        their typed errors; Unavailable when no answer comes in time."""
        return self._pool_query(op, args, ASK_TIMEOUT_MS / 1000 + self.timeout_s)

    def _pool_query(self, op: str, args: dict[str, Any], wait_s: float) -> Any:
        op, args = check(op, args)
        future: pykka.ThreadingFuture[dict[str, Any]] = pykka.ThreadingFuture()
        try:
            self._pool_actor().tell(Query(op, args, future.set))
            answer = future.get(timeout=wait_s)
        except pykka.ActorDeadError:
            raise Unavailable("the node is shutting down") from None
        except pykka.Timeout:
            raise Unavailable("the pool did not answer in time") from None
        return raise_for(answer)

    def set_pool(self, enabled: bool) -> dict[str, Any]:
        """Turn the pool on or off (the holder only: PoolNotHolder, 409, elsewhere)."""
        answer: dict[str, Any] = self._ask(self._pool_actor(), SetPool(enabled))
        return answer

    def _features_actor(self) -> pykka.ActorRef[Any]:
        if self.features_ref is None:
            raise Unavailable("the component flags are not running on this node")
        return self.features_ref

    def _flags(self) -> dict[str, bool] | None:
        if self.features_ref is None:
            return None
        return dict(self._ask(self.features_ref, GetFeatures())["flags"])

    def features(self) -> dict[str, Any]:
        """Every component flag and the core guarantees (`baton features`)."""
        signed = self._ask(self._features_actor(), GetFeatures())
        pool = None if self.pool_ref is None else self._ask(self.pool_ref, GetPool())
        return features_view(signed, pool)

    def set_feature(self, name: str, enabled: bool) -> dict[str, Any]:
        """Turn a component on or off, mesh-wide (the holder only: 409 elsewhere); the
        pool's flag is the pool's own switch. FeatureRefused (400) for a name that has
        no flag, a core guarantee's above all."""
        if check_name(name) == "pool":
            self.set_pool(enabled)
        else:
            self._ask(self._features_actor(), SetFeature(name, enabled))
        return self.features()

    def wakeup(self, force: bool) -> dict[str, Any]:
        """Make this machine awake by a planned handoff (or, with ``force``, by taking
        over an expired lease); the answer once it is done. WakeupFailed says why not
        (the old holder stays awake)."""
        if self.handoff is None:
            raise Unavailable("the handoff is not running on this node")
        s = self.settings
        wait_s = (3 * s.handoff_ack_timeout_ms + 2 * s.lease_ttl_ms) / 1000
        give_up = time.monotonic() + WAKEUP_PATIENCE_S
        attempts = 0
        while True:
            attempts += 1
            answer: Future[dict[str, Any]] = Future()
            self.handoff.tell(Wakeup(force, answer))
            try:
                result = answer.result(wait_s)
            except FutureTimeout:
                raise WakeupFailed(f"no answer within {wait_s:.0f} s") from None
            result["attempts"] = attempts
            if result["ok"]:
                return result
            again = not force and may_retry(result["outcome"], result["detail"])
            if not again or time.monotonic() + RETRY_PAUSE_S >= give_up:
                raise WakeupFailed(f"{result['outcome']}: {result['detail']}")
            log.info("wakeup: %s (%s); trying again", result["outcome"], result["detail"])
            time.sleep(RETRY_PAUSE_S)  # the old holder is still awake: nothing is lost

    def send_message(self, topic: str, text: str, wait_s: float) -> dict[str, Any]:
        """Queue a user message for the channel (durably) and wait up to ``wait_s`` for
        the channel to have it: ``status`` is "posted" (with ``message_id``) or "queued"
        (it will be posted once a holder is reachable)."""
        if self.delivery is None:
            raise BadRequest("this machine has no channel; set one with `baton init --channel`")
        if not self.settings.channel.startswith("local:"):
            raise BadRequest("baton send posts through the bundled chat service (local:) only")
        item_id = self._ask(self.delivery, QueueUserMessage(topic, text))
        deadline = self.clock.monotonic_ms() + wait_s * 1000
        while True:
            view: dict[str, Any] = self._ask(self.delivery, GetUserMessage(item_id))
            if view["status"] == "posted" or self.clock.monotonic_ms() >= deadline:
                return view
            time.sleep(0.02)  # an HTTP view may wait; it polls the actor's answer

    def _lease(self, me: MachineEntry, entries: Mapping[str, MachineEntry]) -> dict[str, Any]:
        """Who is awake, as the lease says; without a lease store, as the registry says."""
        if self.lease is not None:
            return dict(self._ask(self.lease, GetLease()))
        awake = next((e.machine_id for e in entries.values() if e.role is Role.AWAKE), None)
        return {
            "role": me.role.value,
            "holder": awake,
            "epoch": 0,
            "deadline_ms": None,
            "failover": "none: this mesh has no lease store, so no machine takes over by itself",
        }

    def role(self) -> Role:
        """This machine's role now: the lease's word if there is a lease store."""
        if self.lease is not None:
            return Role(self._ask(self.lease, GetLease())["role"])
        me: MachineEntry = self._ask(self.registry, GetSelf())
        return me.role

    def metrics(self) -> dict[str, Any]:
        """What /metrics renders: counters and histograms, and the status for the gauges
        (None if a part of the node did not answer in time: the counters still go out)."""
        try:
            status: dict[str, Any] | None = self.status()
        except Unavailable:
            status = None
        return {
            "counters": self.counters.snapshot(),
            "histograms": self.counters.histograms(),
            "status": status,
        }

    def count(self, name: str) -> None:
        self.counters.inc(name)

    def pair_session(self, verify: bool) -> dict[str, Any]:
        if self.role() is not Role.AWAKE:
            raise BadRequest(f"only the awake machine can pair; {self._who_is_awake()}")
        return self.pairing.new_session(verify)

    def _who_is_awake(self) -> str:
        if self.lease is None:
            return "run `baton pair` there"
        view = self._ask(self.lease, GetLease())
        if view["holder"] is None:
            return "no machine holds the lease yet; try again in a few seconds"
        if view["holder"] == self.me.machine_id:
            return (
                "the lease names this machine, but no renewal of it is confirmed yet (a "
                "slow or unreachable store); try again in a few seconds"
            )
        entries = {e.machine_id: e for e in self._ask(self.registry, ListMachines())}
        holder = entries.get(view["holder"])
        name = holder.nickname if holder else view["holder"]
        return f"{name} holds the lease (epoch {view['epoch']}); run `baton pair` there"

    def remove_machine(self, name: str, reason: str) -> dict[str, Any]:
        entry = self._ask(self.registry, RevokeMachine(name, reason))
        return machine_view(entry, self.me.machine_id)

    def leave(self, body: dict[str, Any]) -> dict[str, Any]:
        """A standby's signed request to leave; answered once the revocation is saved."""
        name = body.get("machine_id")
        if not isinstance(name, str):
            raise BadRequest("machine_id must be a string")
        entries = {e.machine_id: e for e in self._ask(self.registry, ListMachines())}
        entry = entries.get(name)
        if entry is None:
            raise NotFound(f"no machine {name} in this mesh")
        verify_leave(body, self.me.machine_id, entry)
        gone = self._ask(self.registry, RevokeMachine(name, "left the mesh"))
        return machine_view(gone, self.me.machine_id)

    def pair_view(self) -> dict[str, Any]:
        return self.pairing.view()

    def pair_decide(self, body: dict[str, Any]) -> dict[str, Any]:
        session_id, accept = body.get("session_id"), body.get("accept")
        if not isinstance(session_id, str) or not isinstance(accept, bool):
            raise BadRequest("expected {session_id: string, accept: true|false}")
        self.pairing.decide(session_id, accept)
        return {"session_id": session_id, "accept": accept}

    def pair_start(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.pairing.start(body)

    def pair_finish(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.pairing.finish(body)
