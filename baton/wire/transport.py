"""The transport port: how envelopes leave and reach this machine.

One real adapter (``zmq_transport.ZmqTransport``) and one in-memory twin
(``loopback.LoopbackTransport``) implement ``Transport`` and pass the same
contract suite (tests/contract/test_transport.py).

Invariants every adapter keeps:
- ``deliver`` only ever sees envelopes that decoded cleanly, whose ``sender``
  is the authenticated peer and whose ``to`` is this machine
  (``check_inbound`` is the one place these checks live).
- Every refused frame is counted under exactly one counter (``wire.dropped.<code>``,
  ``wire.dropped.multipart`` or ``wire.auth_denied``), logged on the
  ``baton.wire`` logger (rate-limited), and the transport keeps running.
- ``send`` never blocks and never raises for network conditions; misuse
  (wrong sender, oversized envelope) raises ValueError.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from baton.adapters.metrics import Counters
from baton.core.errors import Misaddressed, SpoofedSender
from baton.wire.envelope import Envelope, decode, is_machine_id

log = logging.getLogger("baton.wire")

# Counter names (exactly these; /metrics renders dots as underscores).
RECEIVED = "wire.received"
SENT = "wire.sent"
SEND_FAILED = "wire.send_failed"
AUTH_DENIED = "wire.auth_denied"
DROPPED_PREFIX = "wire.dropped."
DROPPED_MULTIPART = DROPPED_PREFIX + "multipart"

CURVE_KEY_BYTES = 32
_ENDPOINT_RE = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


@dataclass(frozen=True)
class PeerAddress:
    """Where and who a peer is: its machine id, raw X25519 key and endpoint, then the
    endpoints to fall back on, in order, when that one cannot be reached."""

    machine_id: str
    curve_public: bytes
    endpoint: str
    fallbacks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_machine_id(self.machine_id):
            raise ValueError(f"not a machine id: {self.machine_id!r}")
        if not isinstance(self.curve_public, bytes) or len(self.curve_public) != CURVE_KEY_BYTES:
            raise ValueError(f"curve_public of {self.machine_id} must be 32 raw bytes")
        for endpoint in self.endpoints:
            if not isinstance(endpoint, str) or not _ENDPOINT_RE.fullmatch(endpoint):
                raise ValueError(f"not an endpoint: {endpoint!r}")

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every endpoint, in the order to dial them."""
        return (self.endpoint, *self.fallbacks)


class Transport(Protocol):
    """A machine's link to its peers: authenticated, encrypted, message-oriented.

    Delivery is best effort (frames may be lost when links drop), in order per
    sender while a connection lasts. Everything above the port tolerates loss,
    delay and duplication; the port only guarantees authenticity.
    """

    @property
    def endpoint(self) -> str:
        """The actual bound endpoint (port resolved if 0 was asked) once started."""
        ...

    def start(self, deliver: Callable[[Envelope], None]) -> None:
        """Bind and begin receiving. Returns once listening.

        Raises AddressInUse (naming the address) if the address is taken, or
        the underlying error if binding fails otherwise. ``deliver`` is called
        from the transport's own thread, one envelope at a time, only with
        valid envelopes whose sender is the authenticated peer and whose ``to``
        is this machine. It must not block; if it raises, the error is logged
        and the transport keeps running. Calling start twice is an error.
        """
        ...

    def set_peers(self, peers: Sequence[PeerAddress]) -> None:
        """Replace the peer set. Thread-safe, idempotent, allowed before start.

        The allow-list becomes exactly these keys (for new connections, at
        once) and the transport dials exactly these endpoints, dropping links
        to peers no longer listed. Frames from an authenticated machine that
        is no longer listed are dropped and counted as ``wire.auth_denied``.
        Raises ValueError for duplicate machine ids or keys, or this machine.
        """
        ...

    def send(self, env: Envelope) -> bool:
        """Hand ``env`` to the link to ``env.to``. Thread-safe, never blocks.

        Returns True when the frame was handed over for sending (it may still
        be lost, as on any network). Returns False and counts
        ``wire.send_failed`` when the peer is unknown, not connected, its queue
        is full, or the transport is not running. Raises ValueError if
        ``env.sender`` is not this machine or the frame exceeds the size limit.
        """
        ...

    def speak(self, protocol: int) -> None:
        """Write every envelope from now on at wire protocol version ``protocol`` (the
        mesh's, as far as this machine speaks it). Thread-safe."""
        ...

    def stop(self) -> None:
        """Close everything and join the I/O thread (with a timeout). Idempotent."""
        ...

    def is_alive(self) -> bool:
        """True while started and its I/O thread runs (False once stopped or crashed)."""
        ...

    def redial(self, gone: Collection[str] | None = None) -> None:
        """Drop the links connected from an address in ``gone`` (every link: None) and
        dial those peers again from their first endpoint (our addresses went away: the
        connections made from them are dead). Thread-safe."""
        ...

    def dialed(self) -> dict[str, str]:
        """The endpoint each connected peer answers on, by machine id."""
        ...

    def observed(self) -> dict[str, str]:
        """The address each peer's connections to us come from, as we see it (what
        that peer may advertise: "Real networks" in docs/DESIGN.md), by machine id."""
        ...


def check_inbound(data: bytes, peer_id: str, local_id: str, max_bytes: int) -> Envelope:
    """Decode a frame from authenticated peer ``peer_id`` addressed to ``local_id``.

    Raises the FrameError subclass that names the fault: the ``decode`` ones,
    SpoofedSender (``from`` is not the authenticated peer) or Misaddressed.
    """
    env = decode(data, max_bytes)
    if env.sender != peer_id:
        raise SpoofedSender(f"envelope claims to be from {env.sender}")
    if env.to != local_id:
        raise Misaddressed(f"envelope is addressed to {env.to}")
    return env


def check_outbound(env: Envelope, local_id: str, max_bytes: int, data: bytes) -> None:
    """Refuse our own misuse before it reaches the wire (ValueError)."""
    if env.sender != local_id:
        raise ValueError(f"envelope sender {env.sender} is not this machine ({local_id})")
    if len(data) > max_bytes:
        raise ValueError(f"envelope of {len(data)} bytes exceeds max_frame_bytes={max_bytes}")


def validate_peers(
    peers: Sequence[PeerAddress], local_id: str
) -> tuple[dict[str, PeerAddress], dict[bytes, str]]:
    """Index peers by machine id and key; ValueError on duplicates or ourselves."""
    by_id: dict[str, PeerAddress] = {}
    allowed: dict[bytes, str] = {}
    for peer in peers:
        if not isinstance(peer, PeerAddress):
            raise ValueError(f"not a PeerAddress: {peer!r}")
        if peer.machine_id == local_id:
            raise ValueError(f"{local_id} cannot be its own peer")
        if peer.machine_id in by_id or peer.curve_public in allowed:
            raise ValueError(f"duplicate peer {peer.machine_id} or key")
        by_id[peer.machine_id] = peer
        allowed[peer.curve_public] = peer.machine_id
    return by_id, allowed


class WireReport:
    """Counts and logs what happens at the boundary; log lines are rate-limited.

    The first event of a kind from a peer is logged at once; repeats within
    ``interval`` seconds are only counted and summarised in the next line.
    Thread-safe.
    """

    _MAX_KEYS = 1024

    def __init__(
        self,
        counters: Counters,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counters = counters
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def dropped(self, code: str, peer: str, detail: str) -> None:
        """A frame from ``peer`` was refused for reason ``code``."""
        self.counters.inc(DROPPED_PREFIX + code)
        self._warn(code, peer, f"dropped frame from {peer} ({code}): {detail}")

    def auth_denied(self, peer: str, detail: str) -> None:
        """A connection or frame from ``peer`` was refused: key not allowed."""
        self.counters.inc(AUTH_DENIED)
        self._warn("auth_denied", peer, f"refused {peer} (auth_denied): {detail}")

    def connection_failed(self, kind: str, detail: str) -> None:
        """A connection to our wire port never became a peer: ``kind`` is accept_failed
        (out of descriptors) or handshake_failed (failed or timed out: idle)."""
        self.counters.inc(f"wire.{kind}")
        self._warn(kind, "?", f"a connection to the wire port failed ({kind}): {detail}")

    def send_failed(self, peer: str, detail: str) -> None:
        """An outbound frame to ``peer`` could not be handed over."""
        self.counters.inc(SEND_FAILED)
        log.debug("send to %s failed: %s", peer, detail)

    def _warn(self, kind: str, peer: str, message: str) -> None:
        now = self._clock()
        key = (kind, peer)
        with self._lock:
            last, suppressed = self._seen.get(key, (None, 0))
            if last is not None and now - last < self._interval:
                self._seen[key] = (last, suppressed + 1)
                return
            if len(self._seen) >= self._MAX_KEYS:
                self._seen.clear()
            self._seen[key] = (now, 0)
        if suppressed:
            log.warning("%s (%d similar suppressed)", message, suppressed)
        else:
            log.warning("%s", message)
