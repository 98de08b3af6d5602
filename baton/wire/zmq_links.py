"""The wire's outbound side: one CURVE DEALER link per peer, dialled, watched and fed.

``PeerLinks`` belongs to the I/O thread (``zmq_loop.WireLoop``), which builds it in its
own zmq context once the ROUTER is bound and calls it from its poll loop: it opens,
closes and redials the links, reads their monitor events, and hands queued frames to
zmq. It registers its sockets with the thread's poller and publishes what the caller
threads may know (``connected``, ``via``, ``queued``) in ``WireShared`` under its lock.

Invariants:
- Only the I/O thread calls it.
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
- Every frame accepted by ``send`` leaves ``WireShared.queued`` here: handed to
  zmq (``wire.sent``) or dropped (``wire.send_failed``).
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from baton.wire.transport import SENT, PeerAddress, WireReport, log
from baton.wire.zmq_shared import WireConfig, WireShared

SNDHWM = 1000
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
RECONNECT_IVL_MAX_MS = 2000
# A TCP connect not answered in this long is abandoned and tried again (libzmq's
# reconnect): without it a SYN sent into a cut or to an address that is gone waits out
# the kernel's backoff (1, 2, 4 ... 64 s), and a healed path stays unused that long.
CONNECT_TIMEOUT_MS = 3000

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
# After a failed handshake (a peer's ZAP refused us, e.g. because it has not admitted us
# yet, or another machine answers at that endpoint) we close the link and dial again
# after this backoff, doubling, rather than let libzmq retry at once forever.
REDIAL_BACKOFF_S = (0.5, 10.0)


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


class PeerLinks:
    """The DEALER link to each peer in ``WireShared.peers``; the I/O thread's alone."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        poller: zmq.Poller,
        config: WireConfig,
        shared: WireShared,
        report: WireReport,
    ) -> None:
        self._ctx = ctx
        self._poller = poller
        self._cfg = config
        self._shared = shared
        self._report = report
        self._links: dict[str, _Link] = {}

    def handle(self, events: dict[Any, int]) -> None:
        """Serve the links the poll found ready: read monitor events, flush queues."""
        for link in list(self._links.values()):
            if link.monitor in events:
                self._read_monitor(link)
            if link.dealer in events:
                self._flush(link)

    def reconcile(self) -> None:
        """Bring the links in line with ``WireShared.peers`` (the PEERS command)."""
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

    def redial(self, gone: Collection[str] | None) -> None:
        """Dial again, from the first endpoint, every link connected from an address in
        ``gone`` (None: every link); the REDIAL command."""
        for machine_id, link in list(self._links.items()):
            if gone is None or link.local in gone:
                self._close_link(machine_id, f"our address {link.local} went away")
                self._open_link(link.address)

    def redial_due(self, now: float) -> None:
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

    def enqueue(self, machine_id: str, data: bytes) -> None:
        """Hand one frame accepted by ``send`` to its peer's link (the send command)."""
        link = self._links.get(machine_id)
        with self._shared.lock:
            connected = machine_id in self._shared.connected
        if link is None or not connected:
            self._unqueue(machine_id, 1)
            self._report.send_failed(machine_id, "peer removed or disconnected")
            return
        link.pending.append(data)
        self._flush(link)

    def close_all(self, reason: str) -> None:
        """Close every link, dropping its pending frames for ``reason``."""
        for machine_id in list(self._links):
            self._close_link(machine_id, reason)

    def _open_link(
        self, address: PeerAddress, backoff_s: float = REDIAL_BACKOFF_S[0], index: int = 0
    ) -> None:
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.sndhwm = SNDHWM
        dealer.immediate = True
        endpoint = address.endpoints[index]
        dealer.ipv6 = is_ipv6(endpoint)
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


def is_ipv6(endpoint: str) -> bool:
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
