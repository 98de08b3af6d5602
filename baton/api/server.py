"""The real WSGI server under baton's Flask apps (the node's API, the bundled chat
service): waitress, threaded, with TCP_NODELAY on every connection.

Invariants:
- ``bind`` listens before anything is served, so a port in use fails first, clearly
  (AddressInUse, or ConfigError naming the knob), and leaves nothing open.
- The loop polls (``asyncore_use_poll``): select() cannot watch a descriptor past 1023.
- Connections, idle time, header and body sizes are bounded (``baton.adapters.limits``): idle
  connections cannot lock the API out for long (waitress's defaults: 100 connections,
  closed after 120 s idle, bodies of up to 1 GiB).
- ``stop`` stops waitress from another thread without a race: the sockets are closed
  inside waitress's own loop (closing them under its running poll() fails with EBADF),
  by a thunk queued and pulled through the loop's trigger under the trigger's lock
  (pull_trigger() queues first and writes after, so a loop woken in between by a worker
  could run the thunk, which closes the trigger, before the write: EBADF, seen under
  load); then the worker threads are shut down.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from baton.adapters import limits
from baton.core.errors import AddressInUse, ConfigError

NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def bind(host: str, port: int, knob: str, what: str) -> socket.socket:
    """A listening socket on host:port; ``knob`` is named when the address is bad."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"cannot listen for {what} on {shown}: {exc.strerror}") from None
        raise ConfigError(knob, f"cannot listen on {shown}: {exc.strerror or exc}") from None
    return sock


def serve(
    app: Any,
    sock: socket.socket,
    threads: int,
    ident: str,
    at_limit: Callable[[], None] | None = None,
) -> Any:
    """A waitress server for ``app`` on ``sock`` (run it with ``server.run()``);
    ``at_limit`` is called each time it reaches its connection limit (waitress logs it
    once and stops accepting until some close)."""
    # poll(), not select(): select() cannot watch a descriptor past 1023, and a node
    # holds one per connection (issue 16: idle connections to the wire pushed it there)
    server = create_server(
        app,
        sockets=[sock],
        threads=threads,
        ident=ident,
        asyncore_use_poll=True,
        connection_limit=limits.HTTP_CONNECTIONS,
        channel_timeout=limits.HTTP_IDLE_S,
        cleanup_interval=limits.HTTP_CLEANUP_S,
        max_request_header_size=limits.HTTP_HEADER_BYTES,
        max_request_body_size=limits.HTTP_BODY_BYTES,
    )
    if NODELAY not in server.adj.socket_options:  # waitress's default has it; make sure
        server.adj.socket_options = [*server.adj.socket_options, NODELAY]
    if at_limit is not None:
        _watch_the_limit(server, at_limit)
    return server


def _watch_the_limit(server: Any, at_limit: Callable[[], None]) -> None:
    """Call ``at_limit`` when waitress enters its connection overflow (its loop asks
    ``readable()`` on every turn; ``in_connection_overflow`` is waitress's own flag)."""
    readable = server.readable

    def watched() -> bool:
        before = getattr(server, "in_connection_overflow", False)
        answer = bool(readable())
        if getattr(server, "in_connection_overflow", False) and not before:
            at_limit()
        return answer

    server.readable = watched


def stop(server: Any, timeout: float = 5.0) -> None:
    """Stop a running (or never started) waitress server from another thread."""
    done = threading.Event()

    def close_everything() -> None:
        wasyncore.close_all(server._map)
        done.set()

    trigger, pulled = server.trigger, False
    with trigger.lock:  # the loop runs thunks only under this lock
        if not trigger._closed:  # closed: the loop has closed everything and ended
            trigger.thunks.append(close_everything)
            with contextlib.suppress(OSError):
                trigger._physical_pull()
                pulled = True
    if not pulled or not done.wait(timeout):  # the loop is not running (or never ran)
        server.close()
    server.task_dispatcher.shutdown(timeout=timeout)
