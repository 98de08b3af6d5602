"""The in-memory twin of the zmq transport, for tests of the logic above the port.

Theory of operation: a ``LoopbackNetwork`` is a switchboard keyed by endpoint
(``loopback://<machine_id>``). ``send`` encodes the envelope and puts the
bytes, tagged with the authenticated sender id, in the receiver's inbox; the
receiver's own thread (named "baton-wire", like the real one) decodes and
checks them with the same ``check_inbound`` as the real adapter, then calls
``deliver``.

Invariants (mirroring ZmqTransport):
- A frame moves only if the sender lists the receiver (by endpoint and key,
  else send returns False) and the receiver's allow-list holds the sender's
  key (else send returns False and the receiver counts ``wire.auth_denied``,
  as a refused CURVE handshake would).
- Frames from a machine no longer in the receiver's allow-list are dropped at
  delivery (``wire.auth_denied``), like the real ROUTER does.
- Per sender and receiver, frames arrive in send order.
- ``partition(a, b)`` silently drops frames both ways (send still returns
  True: a partition is not always visible to the sender) until ``heal(a, b)``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Collection, Sequence

from baton import PROTOCOL_VERSION
from baton.adapters.metrics import Counters
from baton.core.errors import AddressInUse, FrameError
from baton.wire.envelope import Envelope, encode
from baton.wire.transport import (
    RECEIVED,
    SENT,
    PeerAddress,
    WireReport,
    check_inbound,
    check_outbound,
    log,
    validate_peers,
)

_STOP = object()
_JOIN_TIMEOUT_S = 5.0


class LoopbackNetwork:
    """A set of in-memory transports that can reach each other, with fault hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bound: dict[str, LoopbackTransport] = {}
        self._partitions: set[frozenset[str]] = set()

    def transport(
        self, machine_id: str, curve_public: bytes, counters: Counters, max_frame_bytes: int
    ) -> LoopbackTransport:
        """A new, unstarted transport for ``machine_id`` on this network."""
        return LoopbackTransport(self, machine_id, curve_public, counters, max_frame_bytes)

    def partition(self, a: str, b: str) -> None:
        """Drop every frame between machines ``a`` and ``b`` (both directions)."""
        with self._lock:
            self._partitions.add(frozenset((a, b)))

    def heal(self, a: str, b: str) -> None:
        """Undo ``partition(a, b)``. Idempotent."""
        with self._lock:
            self._partitions.discard(frozenset((a, b)))

    def inject_raw(self, to_machine_id: str, from_machine_id: str, data: bytes) -> None:
        """Deliver raw bytes to ``to_machine_id`` as if from authenticated ``from_machine_id``.

        The receiver applies every inbound check (size, schema, spoofing,
        addressing, current allow-list). Partitions apply; an unknown or
        stopped receiver silently loses the frame.
        """
        with self._lock:
            target = self._bound.get(endpoint_of(to_machine_id))
            cut = frozenset((to_machine_id, from_machine_id)) in self._partitions
        if target is not None and not cut:
            target._enqueue(from_machine_id, data)

    # --- used by LoopbackTransport -------------------------------------------

    def _bind(self, transport: LoopbackTransport) -> None:
        with self._lock:
            if transport.endpoint in self._bound:
                raise AddressInUse(f"{transport.endpoint} is already in use")
            self._bound[transport.endpoint] = transport

    def _unbind(self, transport: LoopbackTransport) -> None:
        with self._lock:
            if self._bound.get(transport.endpoint) is transport:
                del self._bound[transport.endpoint]

    def _route(self, sender: LoopbackTransport, peer: PeerAddress, data: bytes) -> bool:
        """Move one frame; False if no authenticated connection could exist."""
        with self._lock:
            target = self._reached(peer)
            cut = frozenset((sender.machine_id, peer.machine_id)) in self._partitions
        if target is None:
            return False  # nobody there with the CURVE server key we expect
        authenticated = target._authenticate(sender.curve_public, sender.endpoint)
        if authenticated is None:
            return False
        if not cut:
            target._enqueue(authenticated, data)
        return True

    def _reached(self, peer: PeerAddress) -> LoopbackTransport | None:
        """The peer at the first of its endpoints where it answers with its key (the
        fallback of the real wire, without its delay). Caller holds the lock."""
        for endpoint in peer.endpoints:
            found = self._bound.get(endpoint)
            if found is not None and found.curve_public == peer.curve_public:
                return found  # another machine there fails the handshake: the next
        return None

    def dialed(self, peers: Sequence[PeerAddress]) -> dict[str, str]:
        with self._lock:
            found = {p.machine_id: self._reached(p) for p in peers}
        return {m: t.endpoint for m, t in found.items() if t is not None}


def endpoint_of(machine_id: str) -> str:
    """The loopback endpoint of a machine."""
    return f"loopback://{machine_id}"


class LoopbackTransport:
    """One machine's transport on a ``LoopbackNetwork``. See ``Transport``."""

    def __init__(
        self,
        network: LoopbackNetwork,
        machine_id: str,
        curve_public: bytes,
        counters: Counters,
        max_frame_bytes: int,
    ) -> None:
        self.machine_id = machine_id
        self.protocol = PROTOCOL_VERSION  # the wire protocol it writes in (speak)
        self.curve_public = curve_public
        self.counters = counters
        self.max_frame_bytes = max_frame_bytes
        self._network = network
        self._endpoint = endpoint_of(machine_id)
        self._report = WireReport(counters)
        self._lock = threading.Lock()
        self._peers: dict[str, PeerAddress] = {}
        self._allowed: dict[bytes, str] = {}
        self._running = False
        self._stopped = False
        self._inbox: queue.SimpleQueue[tuple[str, bytes] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``loopback://<machine_id>``."""
        return self._endpoint

    def start(self, deliver: Callable[[Envelope], None]) -> None:
        """Bind on the network and start the delivery thread (AddressInUse if taken)."""
        with self._lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("a transport starts once")
            self._network._bind(self)
            self._thread = threading.Thread(
                target=self._run, args=(deliver,), name="baton-wire", daemon=True
            )
            self._running = True
        self._thread.start()

    def set_peers(self, peers: Sequence[PeerAddress]) -> None:
        """Replace peers and allow-list at once. See ``Transport.set_peers``."""
        by_id, allowed = validate_peers(peers, self.machine_id)
        with self._lock:
            self._peers = by_id
            self._allowed = allowed

    def speak(self, protocol: int) -> None:
        """See ``Transport.speak``."""
        self.protocol = protocol

    def send(self, env: Envelope) -> bool:
        """Route ``env`` to its peer's inbox. See ``Transport.send``."""
        data = encode(env, self.protocol)
        check_outbound(env, self.machine_id, self.max_frame_bytes, data)
        with self._lock:
            running = self._running
            peer = self._peers.get(env.to)
        if not running:
            self._report.send_failed(env.to, "transport is not running")
            return False
        if peer is None:
            self._report.send_failed(env.to, "unknown peer")
            return False
        if not self._network._route(self, peer, data):
            self._report.send_failed(env.to, "not connected")
            return False
        self.counters.inc(SENT)
        return True

    def redial(self, gone: Collection[str] | None = None) -> None:
        """Nothing to do: no connection outlives a send here."""

    def observed(self) -> dict[str, str]:
        """Nothing: no address is seen here."""
        return {}

    def dialed(self) -> dict[str, str]:
        with self._lock:
            peers = list(self._peers.values())
        return self._network.dialed(peers)

    def is_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self) -> None:
        """Unbind, stop the delivery thread and join it. Idempotent."""
        with self._lock:
            self._running = False
            self._stopped = True
            thread = self._thread
        self._network._unbind(self)
        if thread is not None:
            self._inbox.put(_STOP)
            if thread is threading.current_thread():
                return  # stopped from inside deliver: the thread ends after it
            thread.join(_JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.error("loopback delivery thread of %s did not stop", self.machine_id)

    # --- used by the network and the delivery thread -------------------------

    def _authenticate(self, key: bytes, address: str) -> str | None:
        """The machine id for a connecting ``key``, or None (counted as auth_denied)."""
        with self._lock:
            machine_id = self._allowed.get(key)
        if machine_id is None:
            self._report.auth_denied(address, "key not in allow-list")
        return machine_id

    def _enqueue(self, peer_id: str, data: bytes) -> None:
        self._inbox.put((peer_id, data))

    def _run(self, deliver: Callable[[Envelope], None]) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            assert isinstance(item, tuple)
            peer_id, data = item
            self._accept(peer_id, data, deliver)

    def _accept(self, peer_id: str, data: bytes, deliver: Callable[[Envelope], None]) -> None:
        with self._lock:
            still_allowed = peer_id in self._allowed.values()
        if not still_allowed:
            self._report.auth_denied(peer_id, "machine is no longer in the allow-list")
            return
        try:
            env = check_inbound(data, peer_id, self.machine_id, self.max_frame_bytes)
        except FrameError as exc:
            self._report.dropped(exc.code, peer_id, exc.detail)
            return
        self.counters.inc(RECEIVED)
        try:
            deliver(env)
        except Exception:
            log.exception("deliver callback failed on %s from %s", env.type, peer_id)
