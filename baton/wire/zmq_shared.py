"""What the zmq transport's caller threads and its I/O thread share: state, commands, config.

``ZmqTransport`` (the callers' face) changes a ``WireShared`` under its lock, puts a
command on ``WireShared.commands`` (STOP, PEERS, REDIAL or ("send", peer, frame)) and
writes a wake-up byte; ``WireLoop`` (the I/O thread) and its ``PeerLinks`` run the
commands and report back through the same ``WireShared``. ``WireConfig`` is what the
thread is built with. Nothing here touches zmq.

Invariant: ``WireShared.queued[peer]`` is the number of frames accepted by ``send``
and not yet handed to zmq or dropped; ``send`` refuses above OUTBOX_LIMIT.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from baton.wire.transport import PeerAddress

OUTBOX_LIMIT = 1000  # frames per peer accepted by send() and not yet in zmq

STOP = ("stop",)
PEERS = ("peers",)
REDIAL = ("redial",)


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
