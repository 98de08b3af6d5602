"""The real WSGI server the node uses (baton.api.server): waitress on a pre-bound
socket, TCP_NODELAY on, stopped from another thread."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from baton.adapters import limits
from baton.api.server import serve, stop
from baton.core.errors import AddressInUse
from baton.core.settings import HostPort
from baton.node.ports import bind_http
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(30)


@contextlib.contextmanager
def served(
    at_limit: Any = None,
) -> Iterator[tuple[Any, socket.socket, http.client.HTTPConnection]]:
    """A server answering "ok" at / on a thread, and a client connection to it; both
    stopped afterwards, the thread ended."""
    app = Flask("t")
    app.add_url_rule("/", "root", lambda: "ok")
    sock = bind_http(HostPort("127.0.0.1", 0))
    server = serve(app, sock, 4, "t", at_limit)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=10)
    try:
        yield server, sock, conn
        assert thread.is_alive()
    finally:
        conn.close()
        stop(server)
        sock.close()
        thread.join(10)
    assert not thread.is_alive()


def test_accepted_connections_have_tcp_nodelay() -> None:
    with served() as (server, _sock, conn):
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        channels = wait_for(lambda: list(server.active_channels.values()), 10, "a channel")
        flags = [ch.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for ch in channels]
        assert flags and all(flags)


def test_a_port_in_use_is_an_address_in_use_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        with pytest.raises(AddressInUse) as info:
            bind_http(HostPort("127.0.0.1", port))
    assert str(port) in info.value.detail


def test_descriptors_past_1023_do_not_stop_the_server() -> None:
    """A node holds a descriptor for every connection (libzmq keeps an idle one through
    its handshake): past 1023, select() raises ValueError and waitress's loop died
    (issue 16). It polls instead."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard limit on descriptors is {hard}: cannot go past 1023")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with served() as (_server, sock, conn):
            assert sock.fileno() > 1023  # the loop watches a descriptor past select()'s reach
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"ok"
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_reaching_the_connection_limit_is_counted_once_per_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16: limits are counted where they are reached (the node counts
    http.connection_limit); waitress logs it and stops accepting until some close."""
    monkeypatch.setattr(limits, "HTTP_CONNECTIONS", 5)
    reached: list[int] = []
    with served(lambda: reached.append(1)) as (_server, sock, conn):
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        idle = [socket.create_connection(sock.getsockname(), timeout=5) for _ in range(6)]
        try:
            wait_for(lambda: reached == [1], 10, "the limit reached")
        finally:
            for s in idle:
                s.close()
