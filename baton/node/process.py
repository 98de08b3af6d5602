"""The node process: its entry point (``node_main``, spawned by the supervisor), its
signals and its exit codes. What runs inside is a Node (baton.node.root).

Exit codes: 0 after a clean stop; EXIT_FATAL when start-up is impossible (bad config
or address, identity or home, port in use, already running, any unexpected error
before ready) - the supervisor does not retry those; EXIT_RESTART when asked to restart
(SIGUSR1, e.g. by `baton join`); anything else is a crash and the supervisor restarts
the node.

While running, the process watches the node: if the wire thread, an actor or the HTTP
thread dies, it stops and exits 1 so the supervisor restarts it; if the supervisor
dies, it stops and exits 0 rather than run orphaned.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton.adapters.limits import raise_fd_limit
from baton.adapters.logs import setup_logging
from baton.core.errors import BatonError
from baton.stores.home import HomePaths

if TYPE_CHECKING:
    from baton.node.root import Node

log = logging.getLogger("baton.node")

EXIT_FATAL = 78  # EX_CONFIG: start-up is impossible; do not retry
EXIT_RESTART = 75  # asked to restart (SIGUSR1, e.g. by `baton join`): start again at once


def node_main(home: str, flags: Mapping[str, object | None], conn: Connection | None) -> None:
    """Entry point of the node process (multiprocessing, spawn context)."""
    os.umask(0o077)  # everything the node writes in its home is private
    paths = HomePaths(Path(home))
    setup_logging(paths.logs_dir, "node", "info")
    raise_fd_limit()  # a descriptor per connection: floods of them must not end the node
    stop, restart = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    def restart_asked(*_: object) -> None:
        restart.set()
        stop.set()

    signal.signal(signal.SIGUSR1, restart_asked)
    try:
        from baton.node.root import Node  # the supervisor imports this module, not the node

        node = Node.start(paths.root, flags)
    except BatonError as exc:
        log.error("cannot start: %s", exc.detail)
        _report(conn, {"ok": False, "error": exc.code, "detail": exc.detail})
        raise SystemExit(EXIT_FATAL) from None
    except Exception as exc:  # a start that fails unexpectedly would fail again: don't loop
        log.exception("cannot start")
        detail = f"{type(exc).__name__}: {exc}"
        _report(conn, {"ok": False, "error": "start_failed", "detail": detail})
        raise SystemExit(EXIT_FATAL) from None
    _report(conn, {"ok": True, **node.info})
    code = _run_until_stopped(node, stop)
    raise SystemExit(EXIT_RESTART if restart.is_set() and code == 0 else code)


def _run_until_stopped(node: Node, stop: threading.Event) -> int:
    """Wait for a stop signal; 0 after a clean stop, 1 if a part of the node died."""
    parent, code = os.getppid(), 0
    try:
        while not stop.wait(0.5):
            if os.getppid() != parent:  # the supervisor died (kill -9): don't run orphaned
                log.warning("supervisor pid %d is gone; stopping", parent)
                break
            trouble = node.trouble()
            if trouble:
                log.error("%s; stopping so the supervisor restarts the node", trouble)
                code = 1
                break
        else:
            log.info("stop requested")
    finally:
        node.stop()
    return code


def _report(conn: Connection | None, message: dict[str, Any]) -> None:
    if conn is None:
        return
    try:
        conn.send(message)
    except OSError:
        log.warning("supervisor is gone; could not report %s", message.get("error", "ready"))
    finally:
        conn.close()
