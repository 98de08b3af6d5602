"""The wire I/O thread: the one owner of the zmq context and every zmq socket.

Theory of operation (after pyzmq's zmq/auth/thread.py): thread "baton-wire"
creates the context, a ZAP handler (REP on inproc://zeromq.zap.01), a CURVE
ROUTER bound at the configured address and one CURVE DEALER per peer, and
polls them all together with the read end of a wake-up socketpair. Other
threads never touch a zmq socket: they change ``WireShared`` under its lock,
put a command on ``WireShared.commands`` and write one byte to the wake-up
socket. Shutdown is the STOP command; the thread then closes every socket with
linger 0 and terminates the context itself.

Invariants:
- Only this thread calls into zmq sockets or the context.
- The ZAP handler is bound before the ROUTER, so no CURVE client is ever
  admitted without asking it (libzmq admits every CURVE client when no ZAP
  handler is bound).
- A peer counts as connected only between its DEALER's HANDSHAKE_SUCCEEDED
  and DISCONNECTED monitor events; ``pending`` frames exist only while
  connected and are dropped (``wire.send_failed``) on disconnect.
- A link dials one endpoint of its peer at a time, first the first; when it has
  not been connected for DIAL_FALLBACK_S (counted again from its TCP connection,
  so the handshake has its own), or its handshake failed and the backoff passed,
  it moves to the next (and after the last, the first again). ``WireShared.via``
  names the endpoint of each connected peer. REDIAL (our own addresses went
  away) drops the links whose connection was made from one of them
  (``_Link.local``, read from the socket when it connected) and dials those
  peers again from their first endpoint.
- ``WireShared.queued[peer]`` is the number of frames accepted by ``send``
  and not yet handed to zmq or dropped; ``send`` refuses above OUTBOX_LIMIT.
- Inbound frames pass ``check_inbound`` with the ZAP-assigned User-Id as the
  authenticated sender, and are dropped if that machine is no longer allowed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from baton.adapters import limits
from baton.core.errors import AddressInUse, ConfigError, FrameError
from baton.wire.envelope import Envelope
from baton.wire.transport import (
    RECEIVED,
    SENT,
    PeerAddress,
    WireReport,
    check_inbound,
    log,
)
from baton.wire.zap import ZAP_DOMAIN, ZAP_ENDPOINT, zap_reply

OUTBOX_LIMIT = 1000  # frames per peer accepted by send() and not yet in zmq
SNDHWM = 1000
MIN_MAXMSGSIZE = 64 * 1024  # CURVE handshake commands must always fit
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
RECONNECT_IVL_MAX_MS = 2000
# A TCP connect not answered in this long is abandoned and tried again (libzmq's
# reconnect): without it a SYN sent into a cut or to an address that is gone waits out
# the kernel's backoff (1, 2, 4 ... 64 s), and a healed path stays unused that long.
CONNECT_TIMEOUT_MS = 3000
POLL_MS = 1000  # upper bound on a poll; guards against a lost wake-up
RECV_BATCH = 100  # frames read per poll round, so control never starves

STOP = ("stop",)
PEERS = ("peers",)
REDIAL = ("redial",)
#: A link not connected for this long moves on to its peer's next endpoint.
DIAL_FALLBACK_S = 2.0

HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_MONITOR_EVENTS = (
    zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED
)
_STRANGER_EVENTS = (
    zmq.EVENT_ACCEPT_FAILED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)
# After a failed handshake (a peer's ZAP refused us, e.g. because it has not admitted us
# yet, or another machine answers at that endpoint) we close the link and dial again
# after this backoff, doubling, rather than let libzmq retry at once forever.
REDIAL_BACKOFF_S = (0.5, 10.0)


@dataclass
class WireShared:
    """State shared by the caller threads and the I/O thread; guard with ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    peers: dict[str, PeerAddress] = field(default_factory=dict)
    allowed: dict[bytes, str] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)
    via: dict[str, str] = field(default_factory=dict)  # connected peer -> endpoint
    observed: dict[str, str] = field(default_factory=dict)  # peer -> the address its
    # connections to our ROUTER come from (libzmq's Peer-Address)
    queued: dict[str, int] = field(default_factory=dict)
    running: bool = False
    commands: queue.SimpleQueue[tuple[Any, ...]] = field(default_factory=queue.SimpleQueue)


@dataclass(frozen=True)
class WireConfig:
    machine_id: str
    curve_secret: bytes
    curve_public: bytes
    bind: str
    max_frame_bytes: int


@dataclass
class _Link:
    address: PeerAddress
    dealer: zmq.Socket[bytes]
    monitor: zmq.Socket[bytes]
    index: int  # of the endpoint dialled, in address.endpoints
    dialed_at: float  # when it was dialled or last disconnected (monotonic)
    pending: deque[bytes] = field(default_factory=deque)
    redial_at: float | None = None
    backoff_s: float = REDIAL_BACKOFF_S[0]
    connected: bool = False
    local: str | None = None  # the address our end of the connection has

    @property
    def endpoint(self) -> str:
        return self.address.endpoints[self.index]


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
        self._links: dict[str, _Link] = {}
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
        router.ipv6 = _is_ipv6(cfg.bind)
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
        self._reconcile_links()

    def _close(self) -> None:
        with self._shared.lock:
            self._shared.running = False
        for machine_id in list(self._links):
            self._close_link(machine_id, "transport stopped")
        if self._router is not None and self._router_monitor is not None:
            self._router.disable_monitor()
            self._router_monitor.close(linger=0)
        for sock in (self._router, self._zap):
            if sock is not None:
                sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        self._router = self._zap = self._router_monitor = self._ctx = None

    def _loop(self) -> None:
        assert self._router is not None and self._zap is not None
        while True:
            events = dict(self._poller.poll(POLL_MS))
            if self._wake.fileno() in events:
                _drain(self._wake)
            if self._run_commands():
                return
            if self._zap in events:
                self._answer_zap()
            if self._router in events:
                self._read_router()
            if self._router_monitor in events:
                self._read_router_monitor()
            for link in list(self._links.values()):
                if link.monitor in events:
                    self._read_monitor(link)
                if link.dealer in events:
                    self._flush(link)
            self._redial_due(time.monotonic())

    def _run_commands(self) -> bool:
        """Run every queued command; True when told to stop."""
        while True:
            try:
                command = self._shared.commands.get_nowait()
            except queue.Empty:
                return False
            if command == STOP:
                return True
            if command == PEERS:
                self._reconcile_links()
            elif command[0] == REDIAL[0]:
                gone = command[1]
                for machine_id, link in list(self._links.items()):
                    if gone is None or link.local in gone:
                        self._close_link(machine_id, f"our address {link.local} went away")
                        self._open_link(link.address)
            elif command[0] == "send":
                self._enqueue(command[1], command[2])

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

    # --- outbound ---------------------------------------------------------------

    def _reconcile_links(self) -> None:
        with self._shared.lock:
            desired = dict(self._shared.peers)
        for machine_id, link in list(self._links.items()):
            new = desired.get(machine_id)
            if new is not None and _keeps(link, new):
                link.address = new  # only endpoints after the one it is connected on moved
            elif new != link.address:
                self._close_link(machine_id, "peer removed or changed")
        for machine_id, address in desired.items():
            if machine_id not in self._links:
                self._open_link(address)

    def _redial_due(self, now: float) -> None:
        """A failed handshake: after its backoff, dial the next endpoint (the same one
        when there is only one; libzmq would retry the same one at once, forever). No
        connection for DIAL_FALLBACK_S: the next endpoint."""
        for machine_id, link in list(self._links.items()):
            if link.connected:
                continue
            count = len(link.address.endpoints)
            if link.redial_at is not None and now >= link.redial_at:
                backoff = min(link.backoff_s * 2, REDIAL_BACKOFF_S[1])
                self._close_link(machine_id, "dialling again after a failed handshake")
                self._open_link(link.address, backoff, (link.index + 1) % count)
            elif link.redial_at is None and count > 1 and now - link.dialed_at >= DIAL_FALLBACK_S:
                following = (link.index + 1) % count
                log.info(
                    "%s not reached at %s; dialling %s",
                    machine_id,
                    link.endpoint,
                    link.address.endpoints[following],
                )
                self._close_link(machine_id, "falling back to its next endpoint")
                self._open_link(link.address, link.backoff_s, following)

    def _open_link(
        self, address: PeerAddress, backoff_s: float = REDIAL_BACKOFF_S[0], index: int = 0
    ) -> None:
        assert self._ctx is not None
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.sndhwm = SNDHWM
        dealer.immediate = True
        endpoint = address.endpoints[index]
        dealer.ipv6 = _is_ipv6(endpoint)
        dealer.heartbeat_ivl = HEARTBEAT_IVL_MS
        dealer.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
        dealer.reconnect_ivl_max = RECONNECT_IVL_MAX_MS
        dealer.connect_timeout = CONNECT_TIMEOUT_MS
        dealer.curve_serverkey = address.curve_public
        dealer.curve_secretkey = self._cfg.curve_secret
        dealer.curve_publickey = self._cfg.curve_public
        monitor = dealer.get_monitor_socket(_MONITOR_EVENTS)
        try:
            dealer.connect(endpoint)
        except zmq.ZMQError as exc:  # the link stays unconnected: the fallback moves on
            log.error("cannot dial %s at %s: %s", address.machine_id, endpoint, exc)
        link = _Link(address, dealer, monitor, index, time.monotonic(), backoff_s=backoff_s)
        self._links[address.machine_id] = link
        self._poller.register(monitor, zmq.POLLIN)

    def _close_link(self, machine_id: str, reason: str) -> None:
        link = self._links.pop(machine_id)
        self._set_connected(machine_id, False)
        self._discard_pending(link, reason)
        self._poller.register(link.monitor, 0)
        self._poller.register(link.dealer, 0)
        link.dealer.disable_monitor()
        link.monitor.close(linger=0)
        link.dealer.close(linger=0)

    def _read_monitor(self, link: _Link) -> None:
        machine_id = link.address.machine_id
        while True:
            try:
                event = recv_monitor_message(link.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            assert isinstance(event, dict)
            if event["event"] == zmq.EVENT_CONNECTED:
                link.local = _local_address(event["value"])
                link.dialed_at = time.monotonic()  # the handshake gets its own window
            elif event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                link.connected = True
                self._set_connected(machine_id, True, link.endpoint)
                link.redial_at, link.backoff_s = None, REDIAL_BACKOFF_S[0]
            elif event["event"] & HANDSHAKE_FAILED and link.redial_at is None:
                log.warning(
                    "handshake with %s at %s failed (%s); dialling again in %.1f s",
                    machine_id,
                    link.endpoint,
                    event["value"],
                    link.backoff_s,
                )
                link.redial_at = time.monotonic() + link.backoff_s
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                if link.connected:
                    link.connected, link.dialed_at = False, time.monotonic()
                self._set_connected(machine_id, False)
                self._discard_pending(link, "disconnected")

    def _enqueue(self, machine_id: str, data: bytes) -> None:
        link = self._links.get(machine_id)
        with self._shared.lock:
            connected = machine_id in self._shared.connected
        if link is None or not connected:
            self._unqueue(machine_id, 1)
            self._report.send_failed(machine_id, "peer removed or disconnected")
            return
        link.pending.append(data)
        self._flush(link)

    def _flush(self, link: _Link) -> None:
        machine_id = link.address.machine_id
        while link.pending:
            try:
                link.dealer.send(link.pending[0], zmq.NOBLOCK)
            except zmq.Again:
                break  # not attached yet or at the high-water mark: wait for POLLOUT
            except zmq.ZMQError as exc:
                link.pending.popleft()
                self._unqueue(machine_id, 1)
                self._report.send_failed(machine_id, str(exc))
                continue
            link.pending.popleft()
            self._unqueue(machine_id, 1)
            self._report.counters.inc(SENT)
        self._poller.register(link.dealer, zmq.POLLOUT if link.pending else 0)

    def _discard_pending(self, link: _Link, reason: str) -> None:
        machine_id = link.address.machine_id
        for _ in range(len(link.pending)):
            self._report.send_failed(machine_id, reason)
        self._unqueue(machine_id, len(link.pending))
        link.pending.clear()
        self._poller.register(link.dealer, 0)

    def _set_connected(self, machine_id: str, connected: bool, endpoint: str = "") -> None:
        with self._shared.lock:
            if connected:
                self._shared.connected.add(machine_id)
                self._shared.via[machine_id] = endpoint
            else:
                self._shared.connected.discard(machine_id)
                self._shared.via.pop(machine_id, None)

    def _unqueue(self, machine_id: str, n: int) -> None:
        if n:
            with self._shared.lock:
                left = self._shared.queued.get(machine_id, 0) - n
                if left > 0:
                    self._shared.queued[machine_id] = left
                else:
                    self._shared.queued.pop(machine_id, None)


def _keeps(link: _Link, new: PeerAddress) -> bool:
    """A connected link stays when the peer's key is the same and its endpoints up to the
    one the link is on are unchanged (an endpoint added or dropped after it changes
    nothing a peer should feel); anything else dials again from the first."""
    old = link.address
    if not link.connected or new.curve_public != old.curve_public:
        return False
    upto = link.index + 1
    return new.endpoints[:upto] == old.endpoints[:upto]


def _is_ipv6(endpoint: str) -> bool:
    """``tcp://[::1]:8421`` needs the socket's ipv6 option; libzmq refuses it otherwise."""
    return "[" in endpoint


def _local_address(fd: int) -> str | None:
    """Our address on the connection whose descriptor libzmq reported (None if it is
    gone already: a connection that short-lived needs no redial)."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        with socket.socket(fileno=dup) as sock:
            name = sock.getsockname()
    except OSError:
        return None
    # a descriptor libzmq closed and the system reused may be anything: an IP socket
    # answers (host, port, ...), anything else is no address of ours
    if not isinstance(name, tuple) or not name or not isinstance(name[0], str):
        return None
    return name[0].split("%", 1)[0]


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
