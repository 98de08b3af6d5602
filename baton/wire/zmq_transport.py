"""ZmqTransport: the real Transport, zmq ROUTER/DEALER with CURVE and our own ZAP.

Theory of operation: this module is the thread-safe face of the wire; every
zmq socket lives in the I/O thread of ``zmq_loop.WireLoop`` (thread
"baton-wire"). Callers change the shared state under its lock and post a
command plus a wake-up byte; they never touch a socket.

Invariants:
- One I/O thread per transport; it alone creates, uses and closes the zmq
  context and sockets. ``start`` returns only once the ROUTER is bound (or
  raises what binding raised); ``stop`` is a message, then a bounded join.
- ``send`` never blocks: it answers from shared state (known peer, connected,
  queue below OUTBOX_LIMIT) and hands the frame to the I/O thread.
- The allow-list used by ZAP is replaced atomically by ``set_peers`` and
  read on every handshake, so it applies to new connections at once.

Size guard: the ROUTER's maxmsgsize is max(4 x max_frame_bytes, 64 KiB).
Frames above max_frame_bytes but below that are received, then dropped and
counted by us (``wire.dropped.too_large``); larger ones make libzmq drop the
connection itself (no counter; the peer reconnects). The floor exists because
maxmsgsize also applies to CURVE handshake commands (HELLO is 200 bytes).

Revocation: ZAP is asked only when a connection is made. Removing a key from
the allow-list does not tear down connections already established with it
(a revoked machine is also dropped from the peers, which closes our link to it); the
ROUTER drops every
frame whose authenticated machine id is no longer allowed
(``wire.auth_denied``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Collection, Sequence

from baton import PROTOCOL_VERSION
from baton.adapters.metrics import Counters
from baton.wire.envelope import Envelope, encode, is_machine_id
from baton.wire.transport import (
    CURVE_KEY_BYTES,
    PeerAddress,
    WireReport,
    check_outbound,
    log,
    validate_peers,
)
from baton.wire.zmq_loop import WireLoop
from baton.wire.zmq_shared import OUTBOX_LIMIT, PEERS, REDIAL, STOP, WireConfig, WireShared


class ZmqTransport:
    """The zmq CURVE transport of one machine. See ``baton.wire.transport.Transport``.

    ``curve_secret`` / ``curve_public`` are this machine's raw 32-byte X25519
    keys; ``bind`` is ``tcp://host:port`` (port 0 picks a free port).
    """

    def __init__(
        self,
        machine_id: str,
        *,
        curve_secret: bytes,
        curve_public: bytes,
        bind: str,
        counters: Counters,
        max_frame_bytes: int,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if not is_machine_id(machine_id):
            raise ValueError(f"not a machine id: {machine_id!r}")
        if len(curve_secret) != CURVE_KEY_BYTES or len(curve_public) != CURVE_KEY_BYTES:
            raise ValueError("CURVE keys must be 32 raw bytes")
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self.machine_id = machine_id
        self.curve_public = curve_public
        self.counters = counters
        self.max_frame_bytes = max_frame_bytes
        self.protocol = PROTOCOL_VERSION  # the wire protocol it writes in (speak)
        self._config = WireConfig(machine_id, curve_secret, curve_public, bind, max_frame_bytes)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._report = WireReport(counters)
        self._shared = WireShared()
        self._endpoint = bind
        self._thread: WireLoop | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopped = False

    @property
    def endpoint(self) -> str:
        """The bound endpoint once started (port resolved), else the bind address."""
        return self._endpoint

    def start(self, deliver: Callable[[Envelope], None]) -> None:
        """Start the I/O thread and wait until it listens. See ``Transport.start``."""
        with self._shared.lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("a transport starts once")
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            thread = WireLoop(self._config, self._shared, self._wake_r, deliver, self._report)
            self._thread = thread
        thread.start()
        if not thread.ready.wait(self._start_timeout):
            self.stop()
            raise TimeoutError(f"wire thread did not bind {self._config.bind} in time")
        if thread.start_error is not None:
            self.stop()
            raise thread.start_error
        with self._shared.lock:
            self._endpoint = thread.endpoint
            self._shared.running = not self._stopped
        log.info("%s listening on %s", self.machine_id, self._endpoint)

    def set_peers(self, peers: Sequence[PeerAddress]) -> None:
        """Replace the allow-list now and redial in the I/O thread. See ``Transport``."""
        by_id, allowed = validate_peers(peers, self.machine_id)
        with self._shared.lock:
            self._shared.peers = by_id
            self._shared.allowed = allowed
            self._post(PEERS)

    def speak(self, protocol: int) -> None:
        """See ``Transport.speak``."""
        self.protocol = protocol

    def send(self, env: Envelope) -> bool:
        """Queue ``env`` for its peer's DEALER. See ``Transport.send``."""
        data = encode(env, self.protocol)
        check_outbound(env, self.machine_id, self.max_frame_bytes, data)
        shared = self._shared
        with shared.lock:
            if not shared.running:
                reason = "transport is not running"
            elif env.to not in shared.peers:
                reason = "unknown peer"
            elif env.to not in shared.connected:
                reason = "not connected"
            elif shared.queued.get(env.to, 0) >= OUTBOX_LIMIT:
                reason = "queue full"
            else:
                shared.queued[env.to] = shared.queued.get(env.to, 0) + 1
                self._post(("send", env.to, data))
                return True
        self._report.send_failed(env.to, reason)
        return False

    def redial(self, gone: Collection[str] | None = None) -> None:
        """Drop the links connected from an address in ``gone`` (None: every link) and
        dial those peers again from their first endpoint."""
        with self._shared.lock:
            self._post((*REDIAL, None if gone is None else frozenset(gone)))

    def dialed(self) -> dict[str, str]:
        with self._shared.lock:
            return dict(self._shared.via)

    def observed(self) -> dict[str, str]:
        with self._shared.lock:
            return dict(self._shared.observed)

    def is_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self) -> None:
        """Tell the I/O thread to stop, join it, close the wake-up pair. Idempotent."""
        with self._shared.lock:
            self._stopped = True
            self._shared.running = False
            thread = self._thread
            self._post(STOP)
        if thread is None or thread is threading.current_thread():
            return  # never started, or stopped from inside deliver (thread ends next)
        thread.join(self._stop_timeout)
        if thread.is_alive():
            log.error("wire I/O thread of %s did not stop in time", self.machine_id)
            return
        with self._shared.lock:
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None

    def _post(self, command: tuple[object, ...]) -> None:
        """Queue a command and wake the I/O thread. Caller holds the lock."""
        self._shared.commands.put(command)
        if self._wake_w is not None:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                self._wake_w.send(b"\0")  # a full buffer already means "wake up"
