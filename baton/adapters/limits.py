"""The limits a node keeps against whoever reaches its ports, set on purpose, in one place.

What happens at each one (docs/DESIGN.md, "Limits", and docs/threat-model.md):

- **Descriptors.** Every TCP connection costs the node a descriptor (libzmq holds an
  idle one until its handshake times out; waitress until it is idle too long), and so
  does every git call, SQLite file and agent pipe. At start the node raises its soft
  limit to its hard limit, at most ``FD_SOFT_TARGET``, and warns when it stays below
  ``FD_WARN_BELOW``. Before issue 16 a node kept the default 1024 and ran waitress's
  select() loop, and about 1,100 idle wire connections ended it.
- **The wire** (libzmq ROUTER). A connection that has not finished its CURVE handshake
  within ``WIRE_HANDSHAKE_MS`` is closed by libzmq and counted (``wire.handshake_failed``,
  a line logged per interval). libzmq has no cap on connections; the descriptor limit is
  the cap (an accept past it fails, libzmq goes on, baton counts ``wire.accept_failed``;
  the node keeps its lease, which needs a few descriptors).
- **HTTP** (waitress, the node's API and the bundled chat service). At most
  ``HTTP_CONNECTIONS`` open connections per listener; past it waitress stops accepting
  (the kernel queues up to the backlog) and logs once, until some close; the node counts
  each time (``http.connection_limit``). A connection
  with no request in progress is closed after ``HTTP_IDLE_S`` (checked every
  ``HTTP_CLEANUP_S``); one with a request in progress (a long poll, a wakeup) is not.
  Request headers at most ``HTTP_HEADER_BYTES``, bodies at most ``HTTP_BODY_BYTES``
  (the node's app refuses more than 64 KiB itself, with 413).
- **JSON** from outside: at most ``baton.core.safejson.MAX_DEPTH`` levels deep.
- **Logs**: the same message from the same logger at most ``LOG_BURST`` times per
  ``LOG_WINDOW_S``, then one line saying how many were left out (``baton.adapters.logs``); log
  files rotate at ``LOG_FILE_BYTES`` with ``LOG_FILE_BACKUPS`` old ones kept.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("baton.limits")

FD_SOFT_TARGET = 65536
FD_WARN_BELOW = 8192

WIRE_HANDSHAKE_MS = 10_000

HTTP_CONNECTIONS = 2000
HTTP_IDLE_S = 15
HTTP_CLEANUP_S = 5
HTTP_HEADER_BYTES = 64 * 1024
HTTP_BODY_BYTES = 1024 * 1024

LOG_BURST = 20
LOG_WINDOW_S = 10.0
LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 3


def raise_fd_limit(target: int = FD_SOFT_TARGET) -> int:
    """Raise this process's soft descriptor limit toward ``target`` (never above the hard
    limit, never lower than it was); the limit it now has."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d: %s", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < FD_WARN_BELOW:
        log.warning(
            "descriptor limit %d (hard %d): a flood of connections could exhaust it; "
            "raise the hard limit (ulimit -Hn) to at least %d",
            soft,
            hard,
            FD_WARN_BELOW,
        )
    return int(soft)
