"""The node process: composition root of one machine (DESIGN.md section 3).

Start order: check the home's permissions and lock it; load settings and identity;
start the PeerMonitorActor (it only reacts to messages) and the wire, which binds its
port; bind the HTTP port; open the registry (a corrupt one stops start-up, untouched)
and start the RegistryActor, which announces the peers; start the ticker and serve
HTTP; confirm the registry is up; write the run file and report ready.
Stop order (SIGTERM, SIGINT, SIGHUP or stop()): the reverse, so HTTP stops first and the
PeerMonitorActor last but one, after the wire (its sends then just fail); the lock and
the run file go last. Nothing is left running.

While running, the node watches its parts: if the wire thread, an actor or the HTTP
thread dies, it stops and exits 1 so the supervisor restarts it; if the supervisor
dies, it stops and exits 0 rather than run orphaned.

Exit codes: 0 after a clean stop; EXIT_FATAL when start-up is impossible (bad config
or address, identity or home, port in use, already running, any unexpected error
before ready) - the supervisor does not retry those; anything else is a crash and
the supervisor restarts the node.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pykka

from baton import __version__
from baton.actors.dispatch import Dispatcher
from baton.actors.messages import AnnounceSelf, GetSelf, MembersChanged
from baton.actors.pairing_actor import PairingActor
from baton.actors.peer_monitor import PeerMonitorActor
from baton.actors.registry_actor import RegistryActor
from baton.actors.ticker import Ticker
from baton.adapters.limits import raise_fd_limit
from baton.adapters.logs import setup_logging
from baton.adapters.metrics import Counters
from baton.adapters.netif import EndpointWatcher
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.adapters.system_clock import SystemClock
from baton.api import create_app, create_door_app
from baton.api import server as http_server
from baton.core.endpoints import WILDCARDS, only_loopback
from baton.core.errors import BatonError
from baton.core.lease_types import LeaseChanged
from baton.core.registry import MachineEntry, Role, open_registry
from baton.core.settings import HostPort, Settings
from baton.holder.gate import LeaseGate
from baton.holder.probe import FenceProbe
from baton.node.delivery_parts import start_delivery
from baton.node.handoff_parts import ROUTES as HANDOFF_ROUTES
from baton.node.handoff_parts import start_handoff
from baton.node.lease_parts import LeaseParts, start_lease
from baton.node.relay import Relay
from baton.node.services import NodeActors, NodeServices
from baton.stores.config_file import load_settings
from baton.stores.files import check_own_file, check_private_dir
from baton.stores.home import HomePaths
from baton.stores.identity_store import load_identity, read_api_token
from baton.stores.pairing_store import FilePairingSessionStore
from baton.stores.pending_join import apply_pending_join
from baton.stores.registry_store import JsonRegistryStore
from baton.stores.runfile import ProcessLock, remove_run_file, write_run_file
from baton.wire.fault_hooks import with_fault_hooks
from baton.wire.transport import PeerAddress
from baton.wire.zmq_transport import ZmqTransport

log = logging.getLogger("baton.node")

EXIT_FATAL = 78  # EX_CONFIG: start-up is impossible; do not retry
EXIT_RESTART = 75  # asked to restart (SIGUSR1, e.g. by `baton join`): start again at once
TICK_MS = 100


def bind_http(where: HostPort) -> socket.socket:
    """Bind the HTTP port first, so a port in use fails before anything starts."""
    return http_server.bind(where.host, where.port, "http", "HTTP")


def check_home_dirs(paths: HomePaths) -> None:
    """The parts of the home that steer the node must be ours alone: the registry is the
    wire's allow-list, config.toml its ports, run/ where the CLI sends its token."""
    for directory in (paths.root, paths.data_dir, paths.run_dir, paths.logs_dir):
        if directory.exists():
            check_private_dir(directory)
    for path in (paths.config, paths.registry):
        if path.exists():
            check_own_file(path)


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
        token = read_api_token(paths.root)
        clock, counters = SystemClock(), Counters()
        wire = ZmqTransport(
            identity.machine_id,
            curve_secret=identity.curve_secret,
            curve_public=identity.curve_public,
            bind=s.wire_bind.zmq_endpoint,
            counters=counters,
            max_frame_bytes=s.max_frame_bytes,
        )
        transport = with_fault_hooks(wire, s.fault_file, counters)
        try:
            monitor = PeerMonitorActor.start(
                identity.machine_id,
                transport=transport,
                clock=clock,
                counters=counters,
                interval_ms=s.ping_interval_ms,
                rng=os.urandom,
            )
            self.parts.append(monitor)
            dispatcher = Dispatcher({"ping": monitor, "pong": monitor}, counters)
            transport.start(dispatcher)
            self.parts.append(transport)
            # the news each part hears, including the parts started after it was told
            lease_news: Relay[LeaseChanged] = Relay("lease")
            members: Relay[MembersChanged] = Relay("members")
            endpoints: Relay[AnnounceSelf] = Relay("endpoints")  # the watcher's, later
            members.follow(monitor)
            lease = start_lease(
                s,
                paths=paths,
                identity=identity,
                clock=clock,
                send=transport.send,
                counters=counters,
                listeners=[lease_news],
            )
            if lease is not None:
                self.parts.append(lease)
                members.follow(lease.coordinator)
                dispatcher.route("lease", lease.coordinator)
                if s.fence_probe_url:
                    probe = FenceProbe(
                        s.fence_probe_url, identity.machine_id, lease.gate, clock, counters
                    )
                    probe.start()
                    self.parts.append(probe)
                    self.watched.append(("the fence probe thread", probe.is_alive))

            sock = bind_http(s.http)
            self.parts.append(sock)
            http_url = _url_of(s.http.host, sock)
            door_sock = None if s.door is None else bind_http(s.door)
            if door_sock is not None:
                self.parts.append(door_sock)
            door_url = http_url if door_sock is None else _url_of(s.listen, door_sock)
            watcher = EndpointWatcher(
                transport.endpoint,
                http_url=door_url,
                advertise=s.advertise,
                announce=lambda wire, http: endpoints(AnnounceSelf(wire, http)),
                redial=transport.redial,
            )
            advertised, advertised_http = watcher.look()
            store = JsonRegistryStore(paths.registry)
            opened = open_registry(
                store.load(), identity.public, advertised[0], advertised_http, clock.wall_s()
            )
            registry = RegistryActor.start(
                opened,
                store,
                clock=clock,
                # the wire's allow-list first, and its failure (a peer it cannot dial, a
                # duplicate key) fails the registry, as any bad commit does; then the news
                listeners=[
                    lambda peers: transport.set_peers([_address(p) for p in peers]),
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
            self.parts.append(registry)
            lease_news.follow(registry)
            endpoints.follow(registry)
            dispatcher.route("roster", registry)
            dispatcher.route("announce", registry)
            dispatcher.route("seen", registry)
            if s.wire_bind.host not in WILDCARDS or not only_loopback(advertised):
                registry.ask(AnnounceSelf(advertised, advertised_http), timeout=30)
            # else offline at start: the watcher announces once an address is found
            watcher.start()
            self.parts.append(watcher)
            self.watched.append(("the address watcher", watcher.is_alive))
            delivery = start_delivery(
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
            if delivery is not None:
                self.parts.append(delivery)
                lease_news.follow(delivery.actor, delivery.tail)
                members.follow(delivery.actor, delivery.tail)
                for kind in delivery.ROUTES:
                    dispatcher.route(kind, delivery.actor)
                for kind in delivery.TAIL_ROUTES:
                    dispatcher.route(kind, delivery.tail)
                self.watched.append(("delivery (its actor or poller)", delivery.is_alive))
            handoff = start_handoff(
                s,
                identity=identity,
                send=transport.send,
                lease=lease,
                delivery=delivery,
                clock=clock,
                counters=counters,
            )
            self.parts.append(handoff)
            lease_news.follow(handoff)
            members.follow(handoff)
            for kind in HANDOFF_ROUTES:
                dispatcher.route(kind, handoff)
            pairing = PairingActor.start(
                FilePairingSessionStore(paths.pairing_session), clock, os.urandom
            )
            self.parts.append(pairing)
            services = NodeServices(
                me=identity.public,
                settings=s,
                api_token=token,
                actors=NodeActors(
                    registry=registry,
                    peers=monitor,
                    pairing=pairing,
                    lease=None if lease is None else lease.coordinator,
                    delivery=None if delivery is None else delivery.actor,
                    tail=None if delivery is None else delivery.tail,
                    handoff=handoff,
                ),
                counters=counters,
                clock=clock,
                home=str(paths.root),
                endpoints={"http": advertised_http, "wire": advertised[0]},
                dialed=transport.dialed,
            )
            ticking: list[pykka.ActorRef[Any]] = [monitor, registry, handoff]
            if lease is not None:
                ticking.append(lease.coordinator)
            if delivery is not None:
                ticking += delivery.actors
            ticker = Ticker(clock, ticking, TICK_MS)
            ticker.start()
            self.parts.append(ticker)
            self._serve(create_app(s, services), sock, "the HTTP server thread", counters)
            if door_sock is not None:
                app = create_door_app(s, services)
                self._serve(app, door_sock, "the door's HTTP server thread", counters)
            self.watched += [
                ("HandoffActor", handoff.is_alive),
                ("the wire I/O thread", transport.is_alive),
                ("PeerMonitorActor", monitor.is_alive),
                ("RegistryActor", registry.is_alive),
                ("PairingActor", pairing.is_alive),
            ]
            if lease is not None:
                self.watched.append(("the lease coordinator or its store worker", lease.is_alive))
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
        for part in self.parts:  # first of all, the holder stops acting and says so
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


def _address(peer: MachineEntry) -> PeerAddress:
    first, *fallbacks = peer.endpoints
    return PeerAddress(peer.machine_id, peer.identity.encryption_public, first, tuple(fallbacks))


def _gate_open(gate: LeaseGate, clock: SystemClock) -> Callable[[], bool]:
    return lambda: gate.current(clock.monotonic_ms()) is not None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _url_of(host: str, sock: socket.socket) -> str:
    return f"http://{_url_host(host)}:{sock.getsockname()[1]}"


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


def node_main(home: str, flags: Mapping[str, object | None], conn: Connection | None) -> None:
    """Entry point of the node process (multiprocessing, spawn context)."""
    os.umask(0o077)  # everything the node writes in its home is private
    paths = HomePaths(Path(home))
    setup_logging(paths.logs_dir, "node", "info")
    raise_fd_limit()  # a descriptor per connection: floods of them must not end the node
    stop, restart = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    def restart_asked(*_: object) -> None:
        restart.set()
        stop.set()

    signal.signal(signal.SIGUSR1, restart_asked)
    try:
        node = Node.start(paths.root, flags)
    except BatonError as exc:
        log.error("cannot start: %s", exc.detail)
        _report(conn, {"ok": False, "error": exc.code, "detail": exc.detail})
        raise SystemExit(EXIT_FATAL) from None
    except Exception as exc:  # a start that fails unexpectedly would fail again: don't loop
        log.exception("cannot start")
        detail = f"{type(exc).__name__}: {exc}"
        _report(conn, {"ok": False, "error": "start_failed", "detail": detail})
        raise SystemExit(EXIT_FATAL) from None
    _report(conn, {"ok": True, **node.info})
    code = _run_until_stopped(node, stop)
    raise SystemExit(EXIT_RESTART if restart.is_set() and code == 0 else code)


def _run_until_stopped(node: Node, stop: threading.Event) -> int:
    """Wait for a stop signal; 0 after a clean stop, 1 if a part of the node died."""
    parent, code = os.getppid(), 0
    try:
        while not stop.wait(0.5):
            if os.getppid() != parent:  # the supervisor died (kill -9): don't run orphaned
                log.warning("supervisor pid %d is gone; stopping", parent)
                break
            trouble = node.trouble()
            if trouble:
                log.error("%s; stopping so the supervisor restarts the node", trouble)
                code = 1
                break
        else:
            log.info("stop requested")
    finally:
        node.stop()
    return code


def _report(conn: Connection | None, message: dict[str, Any]) -> None:
    if conn is None:
        return
    try:
        conn.send(message)
    except OSError:
        log.warning("supervisor is gone; could not report %s", message.get("error", "ready"))
    finally:
        conn.close()
