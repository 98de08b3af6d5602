"""The composition root of one machine (docs/DESIGN.md, "Process model"): Node builds
every part, then wires them, then runs them, as magic-wormhole's Boss does.

1. Ports: check the home's permissions and lock it; load settings and identity; bind
   the wire and the HTTP ports (one in use fails the start before anything runs). The
   wire listens from here on, but admits no peer until the registry's first commit.
2. Build: the PeerMonitorActor, the lease, delivery and its live tail, the handoff,
   the agent state's sync, the pairing actor and the address watcher. No part holds
   another that is built after it: the news of the lease, the members and this
   machine's endpoints reaches them through relays, and the wire's envelopes through
   the dispatcher.
3. Wire: every relay's followers and every envelope kind's actor, in one place.
4. The registry, last: its first commit opens the wire to the peers (every route is in
   place by then) and tells the members to every part.
5. Run: announce this machine, start the threads (the address watcher, the fence
   probe, the channel poller, the ticker) and serve HTTP; confirm the registry is up;
   write the run file and report ready.

Stop (Node.stop): the holder pushes its last state changes, then releases, while
everything runs; then the parts
stop in the reverse of the order they were built, so HTTP stops first and the wire
last; the lock and the run file go last of all. Nothing is left running.
The process around a node (signals, exit codes, the supervisor) is baton.node.process.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pykka

from baton import __version__
from baton.actors.dispatch import Dispatcher
from baton.actors.messages import AnnounceSelf, GetSelf, MembersChanged
from baton.actors.pairing_actor import PairingActor
from baton.actors.peer_monitor import PeerMonitorActor
from baton.actors.pool_messages import Heard
from baton.actors.registry_actor import RegistryActor
from baton.actors.ticker import Ticker
from baton.adapters.metrics import Counters
from baton.adapters.netif import EndpointWatcher
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.adapters.system_clock import SystemClock
from baton.api import create_app, create_door_app
from baton.api import server as http_server
from baton.build import THIS
from baton.core.endpoints import WILDCARDS, only_loopback
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.registry import MachineEntry, MachineRegistry, Role, open_registry, writes_at
from baton.core.settings import Settings
from baton.holder.gate import LeaseGate
from baton.holder.probe import FenceProbe
from baton.node.delivery_parts import build_delivery
from baton.node.feature_parts import build_features
from baton.node.handoff_parts import ROUTES as HANDOFF_ROUTES
from baton.node.handoff_parts import build_handoff
from baton.node.lease_parts import LeaseParts, build_lease
from baton.node.pool_parts import build_pool
from baton.node.ports import bind_http, bind_wire, check_home_dirs, url_of
from baton.node.relay import Relay
from baton.node.secret_parts import build_secret_sync
from baton.node.services import NodeActors, NodeServices
from baton.node.state_parts import StateParts, build_state_sync
from baton.stores.config_file import load_settings
from baton.stores.home import HomePaths
from baton.stores.identity_store import load_identity, read_api_token
from baton.stores.pairing_store import FilePairingSessionStore
from baton.stores.pending_join import apply_pending_join
from baton.stores.registry_store import JsonRegistryStore
from baton.stores.restart_store import restart_check
from baton.stores.runfile import ProcessLock, remove_run_file, write_run_file
from baton.wire.transport import PeerAddress

log = logging.getLogger("baton.node")

TICK_MS = 100
REGISTRY_ROUTES = ("roster", "announce", "seen")
P = TypeVar("P")


@dataclass
class Node:
    """One running node; build with Node.start(), end with stop()."""

    paths: HomePaths
    settings: Settings
    parts: list[Any] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    info: dict[str, Any] = field(default_factory=dict)
    watched: list[tuple[str, Callable[[], bool]]] = field(default_factory=list)

    @classmethod
    def start(cls, home: Path, flags: Mapping[str, object | None]) -> Node:
        paths = HomePaths(home)
        check_home_dirs(paths)
        lock = ProcessLock(paths.node_lock, "node")
        lock.acquire()
        try:
            if apply_pending_join(paths):  # a join made while the last node ran
                log.info("applied the join made while the last node ran")
            settings = load_settings(home, os.environ, flags)
            node = cls(paths, settings)
            node.parts.append(lock)
            node._build()
        except BaseException:
            lock.release()
            raise
        return node

    def _build(self) -> None:
        s, paths = self.settings, self.paths
        logging.getLogger().setLevel(s.log_level.upper())
        identity = load_identity(paths.root)
        token = read_api_token(paths.root)  # a home without one fails before anything runs
        clock, counters = SystemClock(), Counters()
        dispatcher = Dispatcher({}, counters)  # routed in step 3, before a peer is admitted
        # the news each part hears, told through a relay (a part built later hears the last)
        lease_news: Relay[LeaseChanged] = Relay("lease")
        members: Relay[MembersChanged] = Relay("members")
        endpoints: Relay[AnnounceSelf] = Relay("endpoints")
        heard: Relay[Heard] = Relay("peers")  # a peer answered a ping (the pool hears it)
        try:
            # 1. ports
            transport = self._keep(bind_wire(s, identity, counters, dispatcher))
            sock = self._keep(bind_http(s.http))
            http_url = url_of(s.http.host, sock)
            door_sock = None if s.door is None else self._keep(bind_http(s.door))
            door_url = http_url if door_sock is None else url_of(s.listen, door_sock)
            # 2. build
            watcher = self._keep(
                EndpointWatcher(
                    transport.endpoint,
                    http_url=door_url,
                    advertise=s.advertise,
                    announce=lambda wire, http: endpoints(AnnounceSelf(wire, http)),
                    redial=transport.redial,
                )
            )
            advertised, advertised_http = watcher.look()
            store = JsonRegistryStore(paths.registry)
            opened = open_registry(
                store.load(), identity.public, advertised[0], advertised_http, clock.wall_s()
            )
            me = identity.machine_id  # it writes at the mesh's protocol, told at each change
            transport.speak(writes_at(me, THIS, opened.active_peers()))
            monitor = self._keep(
                PeerMonitorActor.start(
                    identity.machine_id,
                    transport=transport,
                    clock=clock,
                    counters=counters,
                    interval_ms=s.ping_interval_ms,
                    rng=os.urandom,
                    heard=lambda peer, now_ms: heard(Heard(peer, now_ms)),
                )
            )
            lease = self._keep(
                build_lease(
                    s,
                    paths=paths,
                    identity=identity,
                    clock=clock,
                    send=transport.send,
                    counters=counters,
                    listeners=[lease_news],
                )
            )
            probe = None
            if lease is not None and s.fence_probe_url:
                url = s.fence_probe_url
                probe = self._keep(FenceProbe(url, me, lease.gate, clock, counters))
            delivery = self._keep(
                build_delivery(
                    s,
                    paths=paths,
                    identity=identity,
                    clock=clock,
                    send=transport.send,
                    counters=counters,
                    lease_gate=None if lease is None else lease.gate,
                    lease=None if lease is None else lease.coordinator,
                    founder=opened.me.role is Role.AWAKE,
                )
            )
            handoff = self._keep(
                build_handoff(
                    s,
                    identity=identity,
                    send=transport.send,
                    lease=lease,
                    delivery=delivery,
                    clock=clock,
                    counters=counters,
                )
            )
            features, gate = build_features(
                paths=paths, identity=identity, counters=counters, send=transport.send
            )
            self._keep(features)
            state = self._keep(
                build_state_sync(
                    s,
                    paths=paths,
                    identity=identity,
                    clock=clock,
                    counters=counters,
                    enabled=lambda: gate.enabled("state_sync"),
                )
            )
            secrets = self._keep(
                build_secret_sync(
                    paths=paths,
                    identity=identity,
                    clock=clock,
                    counters=counters,
                    send=transport.send,
                    on_change=(lambda _: None) if delivery is None else delivery.secrets_changed,
                    enabled=lambda: gate.enabled("secret_sync"),
                )
            )
            pool = None
            if lease is not None:  # the pool needs a holder
                pool = self._keep(
                    build_pool(
                        s,
                        paths=paths,
                        identity=identity,
                        clock=clock,
                        counters=counters,
                        send=transport.send,
                        delivery=delivery,
                        state=state,
                    )
                )
            pairing = self._keep(
                PairingActor.start(
                    FilePairingSessionStore(paths.pairing_session), clock, os.urandom
                )
            )
            # 3. wire
            routes: dict[str, pykka.ActorRef[Any]] = dict.fromkeys(("ping", "pong"), monitor)
            routes |= dict.fromkeys(HANDOFF_ROUTES, handoff)
            routes |= dict.fromkeys(secrets.routes, secrets.actor)
            routes |= dict.fromkeys(features.routes, features.actor)
            members.follow(monitor, handoff, secrets.actor, features.actor)
            lease_news.follow(handoff, features.actor)
            if lease is None:  # no lease store: the registry's awake machine holds epoch 1
                features.actor.tell(_registry_holder(opened))
            if state is not None:
                lease_news.follow(state.actor)
            if pool is not None:
                routes |= dict.fromkeys(pool.routes, pool.actor)
                members.follow(pool.actor)
                lease_news.follow(pool.actor)
                heard.follow(pool.actor)
            if lease is not None:
                routes["lease"] = lease.coordinator
                members.follow(lease.coordinator)
            if delivery is not None:
                routes |= dict.fromkeys(delivery.ROUTES, delivery.actor)
                routes |= dict.fromkeys(delivery.TAIL_ROUTES, delivery.tail)
                members.follow(*delivery.actors)
                lease_news.follow(*delivery.actors)
            for kind, actor in routes.items():
                dispatcher.route(kind, actor)
            # 4. the registry
            registry = self._keep(
                RegistryActor.start(
                    opened,
                    store,
                    clock=clock,
                    # the wire's allow-list first, and its failure (a peer it cannot dial,
                    # a duplicate key) fails the registry, as any bad commit does; then
                    # the news
                    listeners=[
                        lambda peers: transport.set_peers([_address(p) for p in peers]),
                        lambda peers: transport.speak(writes_at(me, THIS, peers)),
                        lambda peers: members(MembersChanged(tuple(peers))),
                    ],
                    send=transport.send,
                    counters=counters,
                    rng=os.urandom,
                    signer=Ed25519Signer(identity.machine_id, identity.signing_key),
                    verify=verify_ed25519,
                    may_lead=None if lease is None else _gate_open(lease.gate, clock),
                    observe=s.wire_bind.host in WILDCARDS,
                )
            )
            for kind in REGISTRY_ROUTES:  # a roster before this line is dropped and resent
                dispatcher.route(kind, registry)
            lease_news.follow(registry)
            endpoints.follow(registry)
            # 5. run
            if s.wire_bind.host not in WILDCARDS or not only_loopback(advertised):
                registry.ask(AnnounceSelf(advertised, advertised_http), timeout=30)
            # else offline at start: the watcher announces once an address is found
            watcher.start()
            if probe is not None:
                probe.start()
            if delivery is not None:
                delivery.start()
            ticking: list[pykka.ActorRef[Any]] = [monitor, registry, handoff, secrets.actor]
            ticking += [features.actor]
            ticking += [] if lease is None else [lease.coordinator]
            ticking += [] if delivery is None else delivery.actors
            ticking += [] if state is None else [state.actor]
            ticking += [] if pool is None else [pool.actor]
            self._keep(Ticker(clock, ticking, TICK_MS)).start()
            actors = NodeActors(
                registry=registry,
                peers=monitor,
                pairing=pairing,
                lease=None if lease is None else lease.coordinator,
                delivery=None if delivery is None else delivery.actor,
                tail=None if delivery is None else delivery.tail,
                handoff=handoff,
                state=None if state is None else state.view,
                pool=None if pool is None else pool.actor,
                features=features.actor,
            )
            services = NodeServices(
                me=identity.public,
                settings=s,
                api_token=token,
                actors=actors,
                counters=counters,
                clock=clock,
                home=str(paths.root),
                endpoints={"http": advertised_http, "wire": advertised[0]},
                dialed=transport.dialed,
                restart=restart_check(paths, __version__),  # the UpdateRestartHandshake
            )
            self._serve(create_app(s, services), sock, "the HTTP server thread", counters)
            if door_sock is not None:
                app = create_door_app(s, services)
                self._serve(app, door_sock, "the door's HTTP server thread", counters)
            self.watched += [
                ("the wire I/O thread", transport.is_alive),
                ("PeerMonitorActor", monitor.is_alive),
                ("HandoffActor", handoff.is_alive),
                ("PairingActor", pairing.is_alive),
                ("RegistryActor", registry.is_alive),
                ("SecretSyncActor", secrets.is_alive),
                ("FeaturesActor", features.is_alive),
                ("the address watcher", watcher.is_alive),
            ]
            if lease is not None:
                self.watched.append(("the lease coordinator or its store worker", lease.is_alive))
            if probe is not None:
                self.watched.append(("the fence probe thread", probe.is_alive))
            if delivery is not None:
                self.watched.append(("delivery (its actor or poller)", delivery.is_alive))
            if state is not None:
                self.watched.append(("StateSyncActor", state.is_alive))
            if pool is not None:
                self.watched.append(("PoolActor", pool.is_alive))
            registry.ask(GetSelf(), timeout=30)  # raises if the registry failed to start
        except BaseException:
            self.stop()
            raise
        self.info = {
            "pid": os.getpid(),
            "supervisor_pid": os.getppid(),
            "machine_id": identity.machine_id,
            "http": http_url,
            "wire": transport.endpoint,
            "version": __version__,
            "started_at": time.time(),
        }
        write_run_file(paths.node_run_file, self.info)
        log.info("node %s up: http %s, wire %s", identity.nickname, http_url, transport.endpoint)

    def _keep(self, part: P) -> P:
        """``part`` is stopped with the node (in the reverse of the order kept)."""
        if part is not None:
            self.parts.append(part)
        return part

    def _serve(self, app: Any, sock: socket.socket, what: str, counters: Counters) -> None:
        limit = functools.partial(counters.inc, "http.connection_limit")
        server = http_server.serve(app, sock, 8, "baton", limit)
        self.parts.append(server)
        thread = threading.Thread(target=server.run, name="baton-http", daemon=True)
        thread.start()
        self.watched.append((what, thread.is_alive))

    def trouble(self) -> str | None:
        """Why this node cannot do its job any more (a dead actor or wire), or None."""
        for what, alive in self.watched:
            if not alive():
                return f"{what} died"
        return None

    def stop(self) -> None:
        """Stop everything in reverse start order; safe to call more than once."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        for part in self.parts:  # the holder's last state changes go out while it holds
            if isinstance(part, StateParts):
                part.flush()
        for part in self.parts:  # then the holder stops acting and says so
            if isinstance(part, LeaseParts):
                part.release()
        for part in reversed(self.parts):
            try:
                _stop_part(part)
            except Exception:
                log.exception("error while stopping %r", part)
        self.parts.clear()
        remove_run_file(self.paths.node_run_file, os.getpid())
        log.info("node stopped")


def _registry_holder(opened: MachineRegistry) -> LeaseChanged:
    """What a mesh without a lease store has in place of the lease's news: the machine
    the registry names awake holds, at epoch 1 (as delivery's founder does)."""
    awake = next((e.machine_id for e in opened.entries.values() if e.role is Role.AWAKE), None)
    phase = Phase.HOLDING if awake == opened.self_id else Phase.STANDBY
    return LeaseChanged(phase, awake, 1, "no lease store: the registry's awake machine")


def _address(peer: MachineEntry) -> PeerAddress:
    first, *fallbacks = peer.endpoints
    return PeerAddress(peer.machine_id, peer.identity.encryption_public, first, tuple(fallbacks))


def _gate_open(gate: LeaseGate, clock: SystemClock) -> Callable[[], bool]:
    return lambda: gate.current(clock.monotonic_ms()) is not None


def _stop_part(part: Any) -> None:
    if isinstance(part, pykka.ActorRef):
        part.stop(timeout=5)
    elif isinstance(part, ProcessLock):
        part.release()
    elif isinstance(part, socket.socket):
        part.close()
    elif hasattr(part, "task_dispatcher"):  # the waitress server
        http_server.stop(part)
    else:
        part.stop()
