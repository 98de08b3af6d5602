"""`baton doctor`: from this machine, can it reach what it needs? (issue 17)

One verdict per line, none of them writes anything:
- ``node``: is this machine's node running (and its API answering);
- ``peer``: every active peer in the saved registry (the node saves each change before
  it acts on it) on every endpoint it advertises: a TCP connection, then a
  CURVE handshake made with this machine's own keys (the peer's key answers there and
  its ZAP admits us), each timed;
- ``link``: while the node runs, the round trip it measures to each peer and the
  endpoint the peer answers on;
- ``lease_store``: a read of the lease (a git store is read into a temporary clone, never
  the node's own);
- ``channel``: the Bot API's getWebhookInfo (it answers, takes the token, no webhook).
Checks run concurrently, each bounded by ``timeout_s``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from baton.core.endpoints import host_port
from baton.core.errors import BatonError
from baton.core.settings import Settings
from baton.node.client import NodeClient, running_node
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.stores.registry_store import JsonRegistryStore
from baton.wire.zmq_links import HANDSHAKE_FAILED


@dataclass(frozen=True)
class Verdict:
    check: str  # node, peer, link, lease_store, channel
    target: str
    ok: bool
    detail: str
    ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


def tcp_connect(endpoint: str, timeout_s: float) -> float:
    """Milliseconds to open a TCP connection to ``tcp://host:port``; OSError if not."""
    host, port = host_port(endpoint)
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout_s):
        return _ms(started)


def curve_handshake(
    endpoint: str, server_public: bytes, identity: MachineIdentity, timeout_s: float
) -> float:
    """Milliseconds to a CURVE handshake with the machine whose key is ``server_public``
    at ``endpoint``, as this machine; ConnectionError saying why not."""
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED)
    try:
        dealer.linger = 0
        dealer.ipv6 = "[" in endpoint
        dealer.curve_serverkey = server_public
        dealer.curve_secretkey = identity.curve_secret
        dealer.curve_publickey = identity.curve_public
        started = time.monotonic()
        dealer.connect(endpoint)
        while (left := timeout_s - (time.monotonic() - started)) > 0:
            if not monitor.poll(int(left * 1000) + 1):
                break
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return _ms(started)
            if event["event"] & HANDSHAKE_FAILED:
                raise ConnectionError(
                    "the handshake failed: another key answers there, or it refuses ours "
                    f"(zmq event {event['event']}, {event['value']})"
                )
        raise ConnectionError(f"no handshake within {timeout_s:g} s")
    finally:
        dealer.disable_monitor()
        monitor.close(linger=0)
        dealer.close(linger=0)
        ctx.term()


def check_endpoint(
    nickname: str, endpoint: str, server_public: bytes, identity: MachineIdentity, timeout_s: float
) -> Verdict:
    target = f"{nickname} {endpoint}"
    try:
        tcp_ms = tcp_connect(endpoint, timeout_s)
    except OSError as exc:
        return Verdict("peer", target, False, f"no TCP connection: {exc}")
    try:
        curve_ms = curve_handshake(endpoint, server_public, identity, timeout_s)
    except (ConnectionError, zmq.ZMQError) as exc:
        return Verdict("peer", target, False, f"TCP {tcp_ms} ms, but {exc}", tcp_ms)
    return Verdict(
        "peer", target, True, f"TCP {tcp_ms} ms, CURVE handshake {curve_ms} ms", curve_ms
    )


def check_links(status: Mapping[str, Any]) -> list[Verdict]:
    """What the running node measures to each peer."""
    out = []
    for peer in status.get("peers", []):
        name = peer.get("nickname") or peer["machine_id"]
        rtt = peer.get("rtt_ms")
        if peer.get("reachable") and peer.get("via") and rtt is not None:
            detail = f"answers on {peer['via']}, round trip {rtt:.1f} ms"
            out.append(Verdict("link", name, True, detail, round(rtt, 1)))
        elif peer.get("via"):
            out.append(Verdict("link", name, False, f"connected on {peer['via']}, no pong"))
        else:
            out.append(Verdict("link", name, False, "not connected: no pong from it"))
    return out


def check_lease_store(settings: Settings, paths: HomePaths, timeout_s: float) -> Verdict:
    from baton.node.lease_parts import open_lease_store  # git and etcd only for this check

    where = settings.lease_store
    if not where:
        return Verdict("lease_store", "(none)", True, "no lease store: no automatic failover")
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="baton-doctor-") as scratch:
            store = open_lease_store(settings, paths, Path(scratch) / "lease.git")
            stored = store.read()
            close = getattr(store, "close", None)
            if close is not None:
                close()
    except (BatonError, OSError) as exc:
        detail = exc.detail if isinstance(exc, BatonError) else str(exc)
        return Verdict("lease_store", where, False, f"cannot read the lease: {detail}")
    holder = "no lease yet" if stored.record is None else f"held by {stored.record.holder}"
    return Verdict("lease_store", where, True, f"read in {_ms(started)} ms: {holder}", _ms(started))


def check_channel(settings: Settings, paths: HomePaths, timeout_s: float) -> Verdict:
    from baton.channels import open_channel
    from baton.node.delivery_parts import secret

    if not settings.channel:
        return Verdict("channel", "(none)", True, "no channel: this machine answers nothing")
    started = time.monotonic()
    try:
        channel = open_channel(
            settings.channel,
            poller_id="doctor",
            telegram_token=secret(paths.telegram_token, os.environ, "BATON_TELEGRAM_TOKEN"),
        )
        found = channel.check(timeout_s)
    except BatonError as exc:
        return Verdict("channel", settings.channel, False, exc.detail)
    return Verdict("channel", settings.channel, True, f"{found} ({_ms(started)} ms)", _ms(started))


def diagnose(
    paths: HomePaths, settings: Settings, identity: MachineIdentity, timeout_s: float
) -> list[Verdict]:
    """Every check, in a stable order (see the module comment)."""
    verdicts: list[Verdict] = []
    status: dict[str, Any] | None = None
    if running_node(paths) is None:
        verdicts.append(Verdict("node", "this machine", False, "not running (`baton up`)"))
    else:
        status = NodeClient(paths.root, timeout=timeout_s + 5).get("/api/status")
        verdicts.append(Verdict("node", "this machine", True, f"running, {status['role']}"))
    saved = JsonRegistryStore(paths.registry).load()  # the node saves each change first
    peers = [] if saved is None else saved.active_peers()
    jobs: list[Callable[[], Verdict]] = [
        partial(check_endpoint, p.nickname, e, p.identity.encryption_public, identity, timeout_s)
        for p in peers
        for e in p.endpoints
    ]
    jobs.append(lambda: check_lease_store(settings, paths, timeout_s))
    jobs.append(lambda: check_channel(settings, paths, timeout_s))
    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts += list(pool.map(lambda job: job(), jobs))
    if status is not None:
        verdicts += check_links(status)
    return verdicts
