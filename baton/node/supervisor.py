"""Supervisor: the `baton up` parent process. Runs the node and keeps it running.

- Starts the node in a child process (multiprocessing, spawn context) and waits for
  it to report ready (or a fatal start-up error, which it does not retry).
- Restarts a node that dies unasked, after a backoff that doubles from
  ``backoff_s[0]`` up to ``backoff_s[1]``, and gives up loudly (exit 1) when the node
  has crashed ``crash_limit`` times within ``crash_window_s``.
- SIGTERM, SIGINT and SIGHUP stop it: the node gets SIGTERM (and stops in order on
  its own SIGINT/SIGHUP from the terminal too), then SIGKILL if it has not exited
  within ``stop_timeout_s``. Nothing is left running.
- A node that exits with EXIT_RESTART (it was asked to, with SIGUSR1) is started again
  at once; that is no crash.
- A node that does not report ready within ``ready_timeout_s`` is killed and counted
  as a crash.
- Holds the home's supervisor lock for its whole life, so a second `baton up` on the
  same home is refused; `baton down` finds its pid there.
- Every ``update_check_s`` it reads which baton is installed (the package's metadata on
  disk); when that changed, the same at two looks in a row (an install in progress
  is no update yet), it writes the UpdateRestartHandshake
  for the new version and has the node restart (SIGUSR1), so the node runs what is
  installed and says whether it does (baton.core.update_restart). Once per change: a
  node that comes up on another version is not restarted again for it. A node that
  holds the lease (with a lease store) is not restarted under its mesh: it waits until
  the role has moved (`baton wakeup` on an upgraded standby), or `baton restart` here.
- The spawn context starts a helper, multiprocessing's resource tracker, that would
  outlive the supervisor for a moment; ``end_resource_tracker()`` ends it first, so that
  when the supervisor has exited nothing of baton is left running.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.core.update_restart import UpdateRestartHandshake
from baton.node.client import NodeClient
from baton.node.process import EXIT_FATAL, EXIT_RESTART, node_main
from baton.stores.home import HomePaths
from baton.stores.restart_store import write_handshake
from baton.stores.runfile import ProcessLock, read_run_file, write_run_file

log = logging.getLogger("baton.supervisor")

EXIT_CRASH_LOOP = 1


@dataclass(frozen=True)
class Policy:
    backoff_s: tuple[float, float] = (0.5, 10.0)
    crash_limit: int = 5
    crash_window_s: float = 60.0
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    update_check_s: float | None = 5.0  # how often to look for an update (None: never)


class Supervisor:
    def __init__(
        self,
        home: Path,
        flags: Mapping[str, object | None],
        policy: Policy = Policy(),
        on_ready: Callable[[dict[str, Any]], None] | None = None,
        target: Callable[..., None] = node_main,
    ) -> None:
        self.paths = HomePaths(home)
        self.flags = dict(flags)
        self.policy = policy
        self.on_ready = on_ready
        self.target = target
        self.stopping = threading.Event()
        self.crashes: deque[float] = deque()
        self.ctx = multiprocessing.get_context("spawn")
        self.child: Any = None
        self.error: dict[str, Any] | None = None
        self.installed = installed_version()  # the baton on disk, as last looked at
        self.next_look = 0.0
        self.seen: str | None = None  # another version seen once: sure at the next look
        self.postponed: str | None = None  # an update waiting for the role to move

    def request_stop(self, *_: object) -> None:
        self.stopping.set()

    def run(self, install_signals: bool = True) -> int:
        """Supervise until stopped or given up; returns the process exit code.

        ``install_signals`` is for the main thread of `baton up`; tests that run a
        supervisor on another thread pass False and call request_stop().
        """
        lock = ProcessLock(self.paths.supervisor_lock, "supervisor")
        lock.acquire()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self.request_stop)
        try:
            return self._loop()
        finally:
            self._stop_child()
            lock.release()
            log.info("supervisor stopped")

    def _loop(self) -> int:
        backoff = self.policy.backoff_s[0]
        while not self.stopping.is_set():
            started = time.monotonic()
            code = self._run_child_once()
            if self.stopping.is_set():
                return 0
            if code == EXIT_RESTART:
                log.info("node restarting, as asked")
                continue
            if code == EXIT_FATAL:
                self.error = self.error or {"error": "start_failed", "detail": "see the node log"}
                log.error("node cannot start (%s); not retrying", self.error["detail"])
                write_run_file(self.paths.last_error, self.error)
                return EXIT_FATAL
            now = time.monotonic()
            self.crashes.append(now)
            while self.crashes and now - self.crashes[0] > self.policy.crash_window_s:
                self.crashes.popleft()
            if len(self.crashes) >= self.policy.crash_limit:
                detail = (
                    f"the node crashed {len(self.crashes)} times within "
                    f"{self.policy.crash_window_s:.0f} s; giving up (see "
                    f"{self.paths.logs_dir / 'node.log'})"
                )
                log.critical("%s", detail)
                self.error = {"error": "crash_loop", "detail": detail}
                write_run_file(self.paths.last_error, self.error)
                return EXIT_CRASH_LOOP
            if now - started > self.policy.crash_window_s:
                backoff = self.policy.backoff_s[0]
            log.warning("node exited with %s; restarting in %.1f s", code, backoff)
            if self.stopping.wait(backoff):
                return 0
            backoff = min(backoff * 2, self.policy.backoff_s[1])
        return 0

    def _run_child_once(self) -> int | None:
        parent_conn, child_conn = self.ctx.Pipe(duplex=False)
        self.child = self.ctx.Process(
            target=self.target,
            args=(str(self.paths.root), self.flags, child_conn),
            name="baton-node",
        )
        self.child.start()
        child_conn.close()
        log.info("node started, pid %d", self.child.pid)
        self._await_ready(parent_conn)
        while self.child.is_alive() and not self.stopping.is_set():
            self.child.join(0.5)
            self._look_for_update()
        if self.stopping.is_set():
            return None
        return int(self.child.exitcode)

    def _look_for_update(self) -> None:
        """Another baton is installed than when it last looked: restart the node on it."""
        every, now = self.policy.update_check_s, time.monotonic()
        if every is None or now < self.next_look:
            return
        self.next_look = now + every
        found = installed_version()
        if found is None or found == self.installed:
            self.seen = None
            return
        if found != self.seen:  # an install may be half done: the same at the next look
            self.seen = found
            return
        if self._holds(found):
            return
        self.installed = found
        before = str((read_run_file(self.paths.node_run_file) or {}).get("version", "unknown"))
        write_handshake(self.paths, UpdateRestartHandshake(found, before, time.time()))
        log.warning("baton %s is installed now (the node runs %s): restarting it", found, before)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.child.pid, signal.SIGUSR1)

    def _holds(self, found: str) -> bool:
        """Does the node hold the lease of a mesh (or not say)? Then ``found`` waits."""
        try:
            status = NodeClient(self.paths.root, timeout=5.0).get("/api/status")
            holds = bool(status["role"] == "awake" and status.get("lease_store"))
        except Exception:  # starting, stopping, busy: look again later
            return True
        if holds and self.postponed != found:
            self.postponed = found
            log.warning("baton %s is installed; the node holds the lease, so it restarts "
                        "once the role has moved (`baton wakeup` on an upgraded standby), "
                        "or by `baton restart`", found)  # fmt: skip
        return holds

    def _await_ready(self, conn: Any) -> None:
        deadline = time.monotonic() + self.policy.ready_timeout_s
        try:
            while time.monotonic() < deadline and not self.stopping.is_set():
                if conn.poll(0.2):
                    message = conn.recv()
                    if message.get("ok"):
                        if self.on_ready is not None:
                            self.on_ready(message)
                    else:
                        self.error = message
                    return
                if not self.child.is_alive():
                    return
            if not self.stopping.is_set():
                log.error(
                    "node did not report ready within %.0f s; killing it (a crash)",
                    self.policy.ready_timeout_s,
                )
                self.child.kill()
        except EOFError:
            return  # the node died before it could say anything: a crash
        finally:
            conn.close()

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.exitcode is not None:
            return
        log.info("stopping node pid %d", child.pid)
        try:
            os.kill(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        child.join(self.policy.stop_timeout_s)
        if child.exitcode is None:
            log.error(
                "node pid %d did not stop in %.0f s; killing it",
                child.pid,
                self.policy.stop_timeout_s,
            )
            child.kill()
            child.join(5)


def end_resource_tracker(timeout_s: float = 5.0) -> bool:
    """End and reap the resource tracker this process started (if it did); True if
    there was one. Call it once the nodes are gone, at the end of the process.

    The tracker exits when the last writer of its pipe closes it, after this process has
    exited: a `baton down` that waits for the supervisor would return while it still runs.
    Closing our end here ends it now; one that does not exit within ``timeout_s`` (a
    child still holding the pipe, a stopped process) is killed. The tracker's fields are
    private to CPython; without them this does nothing and the tracker exits by itself.
    """
    from multiprocessing import resource_tracker

    tracker: Any = resource_tracker._resource_tracker
    fd, pid = getattr(tracker, "_fd", None), getattr(tracker, "_pid", None)
    if fd is None or pid is None:
        return False
    tracker._fd = tracker._pid = None
    os.close(fd)
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ChildProcessError):  # already reaped
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                log.warning("the resource tracker pid %d did not exit; killing it", pid)
                os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still its
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
    return True


def installed_version() -> str | None:
    """The version of the baton package installed on disk now (None: not found)."""
    importlib.invalidate_caches()
    try:
        return importlib.metadata.version("baton")
    except importlib.metadata.PackageNotFoundError:
        return None
