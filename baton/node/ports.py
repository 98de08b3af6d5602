"""Step 1 of a node's start (baton.node.root): the home checked, the wire and the HTTP
ports bound. Each fails the start before anything runs: a port in use, a home others
may write."""

from __future__ import annotations

import socket

from baton.actors.dispatch import Dispatcher
from baton.adapters.metrics import Counters
from baton.api import server as http_server
from baton.core.settings import HostPort, Settings
from baton.stores.files import check_own_file, check_private_dir
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.wire.fault_hooks import with_fault_hooks
from baton.wire.transport import Transport
from baton.wire.zmq_transport import ZmqTransport


def check_home_dirs(paths: HomePaths) -> None:
    """The parts of the home that steer the node must be ours alone: the registry is the
    wire's allow-list, config.toml its ports, run/ where the CLI sends its token."""
    for directory in (paths.root, paths.data_dir, paths.run_dir, paths.logs_dir):
        if directory.exists():
            check_private_dir(directory)
    for path in (paths.config, paths.registry):
        if path.exists():
            check_own_file(path)


def bind_http(where: HostPort) -> socket.socket:
    """Bind the HTTP port first, so a port in use fails before anything starts."""
    return http_server.bind(where.host, where.port, "http", "HTTP")


def bind_wire(
    settings: Settings, identity: MachineIdentity, counters: Counters, deliver: Dispatcher
) -> Transport:
    """The wire, bound and listening; it admits no peer until the registry's first
    commit sets its allow-list."""
    zmq = ZmqTransport(
        identity.machine_id,
        curve_secret=identity.curve_secret,
        curve_public=identity.curve_public,
        bind=settings.wire_bind.zmq_endpoint,
        counters=counters,
        max_frame_bytes=settings.max_frame_bytes,
    )
    transport = with_fault_hooks(zmq, settings.fault_file, counters)
    transport.start(deliver)
    return transport


def url_of(host: str, sock: socket.socket) -> str:
    """The http:// URL of a bound socket (an IPv6 host in brackets)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"
