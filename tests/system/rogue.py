"""The rogue: a member's keys in the test's hands, speaking the real wire (CURVE over
TCP) as that machine while its node is stopped, to send what a well-behaved node never
would: forged acks, begins from the wrong machine, live-tail frames replayed,
reordered and repeated."""

from __future__ import annotations

import queue
import time

import psutil

from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer
from baton.core.errors import AddressInUse
from baton.demo.devmesh import Machine
from baton.stores.identity_store import load_identity, load_public_identity
from baton.wire.envelope import Envelope
from baton.wire.handoff_transport import HandoffWireTransport
from baton.wire.transport import PeerAddress
from baton.wire.zmq_transport import ZmqTransport
from tests.waits import wait_for


class Rogue:
    """A member's keys in the test's hands: it speaks the real wire as that machine (its
    node stopped), to send what a well-behaved node never would."""

    def __init__(self, as_machine: Machine, endpoint: str, peers: list[Machine]) -> None:
        ident = load_identity(as_machine.home)
        self.id = ident.machine_id
        self.signer = Ed25519Signer(self.id, ident.signing_key)
        self.inbox: queue.Queue[Envelope] = queue.Queue()
        self.transport = ZmqTransport(
            self.id,
            curve_secret=ident.curve_secret,
            curve_public=ident.curve_public,
            bind=endpoint,
            counters=Counters(),
            max_frame_bytes=1 << 20,
        )
        self.ids = {}
        addresses = []
        for p in peers:
            public = load_public_identity(p.home)
            self.ids[p.name] = public.machine_id
            addresses.append(
                PeerAddress(public.machine_id, public.encryption_public, p.status()["wire"])
            )
        try:
            self.transport.start(self.inbox.put)
        except AddressInUse as exc:  # say who holds it: a CI run once met this, unexplained
            raise AssertionError(f"{exc.detail}; held by {holders_of(endpoint)}") from exc
        self.transport.set_peers(addresses)
        self.handoff = HandoffWireTransport(self.id, self.signer, self.send)

    def reached_by(self, machine: Machine) -> None:
        """Wait until ``machine``'s link reaches this endpoint again (its redial backs off
        while the real node is down): a ping from it arrives."""
        sender, deadline = self.ids[machine.name], time.monotonic() + 40
        while self.expect("ping", deadline - time.monotonic()).sender != sender:
            continue

    def send(self, env: Envelope) -> bool:
        return bool(wait_for(lambda: self.transport.send(env), 10, f"a connection for {env.type}"))

    def expect(self, type_: str, timeout: float) -> Envelope:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                env = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if env.type == type_:
                return env
        raise TimeoutError(f"no {type_} within {timeout} s")

    def begin_from(self, holder_id: str, hid: str) -> Envelope:
        self.handoff.request(holder_id, hid)
        return self.expect("handoff_begin", 10)

    def stop(self) -> None:
        self.transport.stop()


def holders_of(endpoint: str) -> list[str]:
    """Every process with a socket on ``endpoint``'s port, as pid, command line and state
    (for the message of a bind that failed)."""
    port = int(endpoint.rsplit(":", 1)[1])
    found = []
    for conn in psutil.net_connections("inet"):
        if conn.laddr and conn.laddr.port == port:
            try:
                cmd = " ".join(psutil.Process(conn.pid).cmdline())[:200] if conn.pid else "?"
            except psutil.Error:
                cmd = "(gone)"
            found.append(f"pid {conn.pid} {conn.status} {cmd}")
    return found
