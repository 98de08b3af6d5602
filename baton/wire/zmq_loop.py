"""The wire I/O thread: the one owner of the zmq context and every zmq socket.

Theory of operation (after pyzmq's zmq/auth/thread.py): thread "baton-wire"
creates the context, a ZAP handler (REP on inproc://zeromq.zap.01), a CURVE
ROUTER bound at the configured address and one CURVE DEALER per peer (its
``PeerLinks``, ``zmq_links``), and polls them all together with the read end
of a wake-up socketpair. Other threads never touch a zmq socket: they change
``WireShared`` under its lock, put a command on ``WireShared.commands`` and
write one byte to the wake-up socket (``zmq_shared``). Shutdown is the STOP
command; the thread then closes every socket with linger 0 and terminates the
context itself. This module holds the thread, its ROUTER side (ZAP, inbound
frames, strangers' failed connections) and its command loop.

Invariants:
- Only this thread calls into zmq sockets or the context.
- The ZAP handler is bound before the ROUTER, so no CURVE client is ever
  admitted without asking it (libzmq admits every CURVE client when no ZAP
  handler is bound).
- Inbound frames pass ``check_inbound`` with the ZAP-assigned User-Id as the
  authenticated sender, and are dropped if that machine is no longer allowed.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import socket
import threading
import time
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from baton.adapters import limits
from baton.core.errors import AddressInUse, ConfigError, FrameError
from baton.wire.envelope import Envelope
from baton.wire.transport import RECEIVED, WireReport, check_inbound, log
from baton.wire.zap import ZAP_DOMAIN, ZAP_ENDPOINT, zap_reply
from baton.wire.zmq_links import PeerLinks, is_ipv6
from baton.wire.zmq_shared import PEERS, REDIAL, STOP, WireConfig, WireShared

MIN_MAXMSGSIZE = 64 * 1024  # CURVE handshake commands must always fit
POLL_MS = 1000  # upper bound on a poll; guards against a lost wake-up
RECV_BATCH = 100  # frames read per poll round, so control never starves

_STRANGER_EVENTS = (
    zmq.EVENT_ACCEPT_FAILED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


class WireLoop(threading.Thread):
    """The I/O thread. ``ready`` is set once bound (``endpoint``) or failed (``start_error``)."""

    def __init__(
        self,
        config: WireConfig,
        shared: WireShared,
        wake: socket.socket,
        deliver: Callable[[Envelope], None],
        report: WireReport,
    ) -> None:
        super().__init__(name="baton-wire", daemon=True)
        self.ready = threading.Event()
        self.start_error: BaseException | None = None
        self.endpoint = ""
        self._cfg = config
        self._shared = shared
        self._wake = wake
        self._deliver = deliver
        self._report = report
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._zap: zmq.Socket[bytes] | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._router_monitor: zmq.Socket[bytes] | None = None  # strangers' failed attempts
        self._links: PeerLinks | None = None  # made in the thread's own context
        self._poller = zmq.Poller()

    def run(self) -> None:
        try:
            self._open()
        except BaseException as exc:
            self.start_error = exc
            self._close()
            self.ready.set()
            return
        self.ready.set()
        try:
            self._loop()
        except Exception:
            log.exception("wire I/O thread failed; the transport is down")
        finally:
            self._close()

    # --- lifecycle --------------------------------------------------------------

    def _open(self) -> None:
        cfg = self._cfg
        self._ctx = ctx = zmq.Context()
        self._zap = zap = ctx.socket(zmq.REP)
        zap.linger = 0
        zap.bind(ZAP_ENDPOINT)
        self._router = router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        router.curve_server = True
        router.curve_secretkey = cfg.curve_secret
        router.curve_publickey = cfg.curve_public
        router.zap_domain = ZAP_DOMAIN
        router.maxmsgsize = max(4 * cfg.max_frame_bytes, MIN_MAXMSGSIZE)
        router.handshake_ivl = limits.WIRE_HANDSHAKE_MS  # an idle connection's descriptor
        router.ipv6 = is_ipv6(cfg.bind)
        try:
            router.bind(cfg.bind)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse(f"{cfg.bind} is already in use") from exc
            raise ConfigError("wire", f"cannot listen on {cfg.bind}: {exc}") from exc
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._router_monitor = router.get_monitor_socket(_STRANGER_EVENTS)
        # by its fd: zmq.Poller.poll answers a plain socket with its fd, not the object
        self._poller.register(self._wake.fileno(), zmq.POLLIN)
        self._poller.register(zap, zmq.POLLIN)
        self._poller.register(router, zmq.POLLIN)
        self._poller.register(self._router_monitor, zmq.POLLIN)
        self._links = PeerLinks(ctx, self._poller, cfg, self._shared, self._report)
        self._links.reconcile()

    def _close(self) -> None:
        with self._shared.lock:
            self._shared.running = False
        if self._links is not None:
            self._links.close_all("transport stopped")
        if self._router is not None and self._router_monitor is not None:
            self._router.disable_monitor()
            self._router_monitor.close(linger=0)
        for sock in (self._router, self._zap):
            if sock is not None:
                sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._router = self._zap = self._router_monitor = self._ctx = None
        self._links = None

    def _loop(self) -> None:
        assert self._router is not None and self._zap is not None
        links = self._links
        assert links is not None
        while True:
            events = dict(self._poller.poll(POLL_MS))
            if self._wake.fileno() in events:
                _drain(self._wake)
            if self._run_commands(links):
                return
            if self._zap in events:
                self._answer_zap()
            if self._router in events:
                self._read_router()
            if self._router_monitor in events:
                self._read_router_monitor()
            links.handle(events)
            links.redial_due(time.monotonic())

    def _run_commands(self, links: PeerLinks) -> bool:
        """Run every queued command; True when told to stop."""
        while True:
            try:
                command = self._shared.commands.get_nowait()
            except queue.Empty:
                return False
            if command == STOP:
                return True
            if command == PEERS:
                links.reconcile()
            elif command[0] == REDIAL[0]:
                links.redial(command[1])
            elif command[0] == "send":
                links.enqueue(command[1], command[2])

    # --- inbound ----------------------------------------------------------------

    def _answer_zap(self) -> None:
        assert self._zap is not None
        try:
            request = self._zap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        with self._shared.lock:
            allowed = dict(self._shared.allowed)
        reply, refusal = zap_reply(request, allowed)
        self._zap.send_multipart(reply)
        if refusal is not None:
            address = request[3].decode("utf-8", "replace") if len(request) > 3 else "?"
            self._report.auth_denied(address, refusal)

    def _read_router(self) -> None:
        assert self._router is not None
        for _ in range(RECV_BATCH):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._accept(frames[1:])

    def _read_router_monitor(self) -> None:
        """Connections to our port that never became a peer: an accept refused (out of
        descriptors) or a handshake that failed or timed out (an idle connection);
        counted and logged (rate-limited) by the report. A wrong key is the ZAP's."""
        assert self._router_monitor is not None
        for _ in range(RECV_BATCH):
            try:
                event = recv_monitor_message(self._router_monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            failed = event["event"] == zmq.EVENT_ACCEPT_FAILED
            kind = "accept_failed" if failed else "handshake_failed"
            self._report.connection_failed(kind, f"errno {event['value']}")

    def _accept(self, payload: list[zmq.Frame]) -> None:
        peer_id = _user_id(payload[-1]) if payload else ""
        seen = _property(payload[-1], "Peer-Address") if payload else ""
        with self._shared.lock:
            allowed = peer_id in self._shared.allowed.values()
            if allowed and seen:
                self._shared.observed[peer_id] = seen
        if not allowed:
            self._report.auth_denied(peer_id or "?", "machine is not in the allow-list")
            return
        if len(payload) != 1:
            self._report.dropped("multipart", peer_id, f"{len(payload)} payload frames, expected 1")
            return
        try:
            env = check_inbound(
                payload[0].bytes, peer_id, self._cfg.machine_id, self._cfg.max_frame_bytes
            )
        except FrameError as exc:
            self._report.dropped(exc.code, peer_id, exc.detail)
            return
        self._report.counters.inc(RECEIVED)
        try:
            self._deliver(env)
        except Exception:
            log.exception("deliver callback failed on %s from %s", env.type, peer_id)


def _user_id(frame: zmq.Frame) -> str:
    """The ZAP-assigned User-Id (our peer's machine id) of a received frame."""
    return _property(frame, "User-Id")


def _property(frame: zmq.Frame, name: str) -> str:
    try:
        value = frame.get(name)
    except zmq.ZMQError:
        return ""
    return value if isinstance(value, str) else ""


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while sock.recv(4096):
            pass
