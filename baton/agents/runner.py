"""AgentRunner: runs the agent in worker processes, never in the node itself.

An agent that crashes, hangs, prints garbage or eats memory costs one AgentFailed (and a
worker process), never the caller's thread: every run has a deadline, and every worker can
be killed with its whole process group.

Invariants:
- At most ``workers`` runs at once, each on its own worker process; waiting for a free
  worker is not part of a run's timeout. Workers start lazily and are reused while their
  protocol stream is sound.
- A worker belongs to one thread at a time: the run using it, or (when idle) the pool.
  Only its owner reads, writes or closes its pipes, so a descriptor is never used after
  another thread closed it.
- Every worker leads its own process group (``start_new_session``), and ``cmd``
  programs run inside it. A group is signalled only while its leader is not yet reaped
  (the leader's pid, and so the group id, cannot be reused before that), and only by the
  worker's owner or by stop() while the worker is still in ``_all``.
- A timed-out or broken worker is killed (SIGKILL to its group) and reaped before run()
  returns; a dead one is reaped. stop() closes the stdin of idle workers (they exit),
  SIGKILLs the groups of busy ones and of any that linger, and returns once every worker
  is reaped: no worker process is left.
- No read waits without a deadline; an answer line longer than MAX_LINE_BYTES is garbage.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from baton.adapters.metrics import Counters
from baton.agents.base import AgentFailed, AgentMessage, Turn
from baton.agents.builtin import KNOB, parse_spec, short
from baton.agents.worker import (
    MAX_LINE_BYTES,
    BrokenAnswer,
    decode_answer,
    decode_ready,
    encode_request,
)
from baton.core.errors import ConfigError

log = logging.getLogger("baton.agent")

READY_TIMEOUT_S = 30.0  # a worker that has not said ready by then is refused
STOP_GRACE_S = 2.0  # how long stop() lets workers exit after their stdin closed
REAP_TIMEOUT_S = 5.0  # how long to wait for a SIGKILLed process to be reaped
STDERR_TAIL_BYTES = 2000


class _Ended(Exception):
    """The worker's stdout reached end of file (it exited, or is exiting)."""


class _TimedOut(Exception):
    """The deadline passed before the line was complete."""


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    pidfd: int
    drain: threading.Thread = field(init=False)
    tail: collections.deque[bytes] = field(default_factory=lambda: collections.deque(maxlen=20))
    buffer: bytearray = field(default_factory=bytearray)
    next_id: int = 1
    retired: bool = False  # killed or dead, reaped: never used again
    generation: int = 0  # of the environment it started with (AgentRunner.set_env)

    def stderr_tail(self) -> str:
        return short(b"".join(self.tail).decode("utf-8", "replace"), STDERR_TAIL_BYTES)

    def read_line(self, deadline: float) -> bytes:
        """One line from the worker's stdout; _TimedOut, _Ended or BrokenAnswer."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_LINE_BYTES:
                raise BrokenAnswer(f"answer line longer than {MAX_LINE_BYTES} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise _TimedOut
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _Ended
            self.buffer += chunk
        if end > MAX_LINE_BYTES:
            raise BrokenAnswer(f"answer line longer than {MAX_LINE_BYTES} bytes")
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return line

    def write(self, data: bytes, deadline: float) -> None:
        """All of ``data`` to the worker's stdin; _TimedOut, or _Ended if it is gone."""
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise _TimedOut
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise _Ended from None


class AgentRunner:
    """Runs ``spec``'s agent in up to ``workers`` worker processes; see the module invariants.

    ``env`` is the workers' environment (default: this process's); PYTHONPATH in it is
    extended so that baton and this process's sys.path import in the worker. Workers
    start in ``cwd`` (default: this process's), under ``prefix`` (a sandbox's command,
    baton.agents.isolation).
    """

    def __init__(
        self,
        spec: str,
        *,
        workers: int = 2,
        timeout_s: float = 30.0,
        counters: Counters | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.spec = spec
        self.workers = workers
        self.timeout_s = timeout_s
        self.counters = counters
        self._env = _worker_env(os.environ if env is None else env)
        self._cwd, self._prefix = cwd, list(prefix)
        self._generation = 0
        self._cond = threading.Condition()
        self._all: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._busy = 0
        self._started = False
        self._stopped = False

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        """Check the spec and start one worker; ConfigError("agent") if it cannot load."""
        parse_spec(self.spec)
        with self._cond:
            if self._started or self._stopped:
                raise RuntimeError("AgentRunner.start: already started or stopped")
            self._busy += 1  # like a run: stop() waits for this worker too
        worker = None
        try:
            worker = self._spawn()
        except AgentFailed as exc:
            raise ConfigError(KNOB, str(exc).removeprefix(f"{exc.reason}: ")) from None
        finally:
            with self._cond:
                self._started = worker is not None
            self._checkin(worker)

    def stop(self) -> None:
        """Stop every worker and leave no process behind. Idempotent."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            idle, self._idle = self._idle, []
            for worker in self._all - set(idle):  # busy: their runs reap them
                self._kill(worker)
                self._count("agent.workers_killed")
            self._cond.notify_all()
        for worker in idle:
            assert worker.proc.stdin is not None
            worker.proc.stdin.close()
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in idle:
            exited = _wait_exit(worker.pidfd, deadline - time.monotonic())
            self._retire(worker, kill=not exited)
        with self._cond:
            self._cond.wait_for(lambda: self._busy == 0, timeout=REAP_TIMEOUT_S)

    def set_env(self, env: Mapping[str, str]) -> None:
        """Workers start with ``env`` from now on (a secret the agent is given changed):
        idle workers end now, busy ones once their run is done."""
        with self._cond:
            self._env = _worker_env(env)
            self._generation += 1
            idle, self._idle = self._idle, []
        for worker in idle:
            self._retire(worker, kill=True)

    # --- runs ---------------------------------------------------------------------

    def run(self, message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        """The agent's replies to ``message``, or AgentFailed (see the module docstring)."""
        try:
            return self._run(message, history)
        except AgentFailed as exc:
            self._count(f"agent.failed.{exc.reason}")
            raise

    def _run(self, message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        with self._cond:
            if not self._started and not self._stopped:
                raise RuntimeError("AgentRunner.run before start")
            self._cond.wait_for(lambda: self._stopped or self._busy < self.workers)
            if self._stopped:
                raise AgentFailed("stopped", "the agent runner is stopped")
            self._busy += 1
            worker = self._idle.pop() if self._idle else None
        self._count("agent.runs")
        try:
            if worker is None:
                worker = self._spawn()
            return self._ask(worker, message, history)
        finally:
            self._checkin(worker)

    def _ask(self, worker: _Worker, message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        request_id, worker.next_id = worker.next_id, worker.next_id + 1
        deadline = time.monotonic() + self.timeout_s
        try:
            worker.write(encode_request(request_id, message, history), deadline)
            return decode_answer(worker.read_line(deadline), request_id)
        except _TimedOut:
            self._retire(worker, kill=True)
            raise self._failed("timeout", f"no answer within {self.timeout_s:g} s") from None
        except _Ended:
            status = self._retire(worker, kill=False)
            detail = f"the worker died ({status}); stderr: {worker.stderr_tail() or '(empty)'}"
            raise self._failed("crash", detail) from None
        except BrokenAnswer:
            self._retire(worker, kill=True)
            raise

    def _failed(self, reason: str, detail: str) -> AgentFailed:
        with self._cond:
            if self._stopped:  # stop() killed the worker under this run
                return AgentFailed("stopped", "the agent runner stopped")
        return AgentFailed(reason, detail)

    def _checkin(self, worker: _Worker | None) -> None:
        """Return the run's slot (and its worker, if sound); stop() waits for the slots."""
        with self._cond:
            current = worker is not None and worker.generation == self._generation
            if worker is not None and not worker.retired and not self._stopped and current:
                self._idle.append(worker)
                worker = None
        if worker is not None and not worker.retired:
            self._retire(worker, kill=True)  # the runner stopped during this run
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    # --- worker processes ---------------------------------------------------------

    def _spawn(self) -> _Worker:
        """A new worker that has said ready, or AgentFailed("crash", why not)."""
        with self._cond:
            env, generation = self._env, self._generation
        try:
            proc = subprocess.Popen(
                [*self._prefix, sys.executable, "-P", "-m", "baton.agents.worker", self.spec],
                cwd=self._cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                bufsize=0,
            )
        except OSError as exc:
            raise self._failed("crash", f"cannot start a worker: {exc}") from None
        pidfd = os.pidfd_open(proc.pid)  # before any reaping: names this process for good
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)  # writes wait in select, with a deadline
        worker = _Worker(proc=proc, pidfd=pidfd, generation=generation)
        worker.drain = threading.Thread(
            target=_drain, args=(worker,), name=f"baton-agent-stderr-{proc.pid}", daemon=True
        )
        worker.drain.start()
        with self._cond:
            self._all.add(worker)
            if self._stopped:  # stop() came first: this worker ends at once
                self._kill(worker)
        self._count("agent.workers_started")
        log.debug("agent worker %d started: %s", proc.pid, self.spec)
        said_why = False
        try:
            why = decode_ready(worker.read_line(time.monotonic() + READY_TIMEOUT_S))
            said_why = why is not None
        except _TimedOut:
            why = f"the worker did not say ready within {READY_TIMEOUT_S:g} s"
        except (_Ended, BrokenAnswer):
            why = "the worker exited before it was ready"
        if why is None:
            return worker
        if said_why:  # it exits by itself after saying why: let it
            _wait_exit(worker.pidfd, STOP_GRACE_S)
        status = self._retire(worker, kill=True)
        if not said_why:
            tail = worker.stderr_tail()
            why = f"{why} ({status})" + (f"; stderr: {tail}" if tail else "")
        raise self._failed("crash", why)

    def _kill(self, worker: _Worker) -> None:
        """SIGKILL the worker's group; call only while it is in _all or before its reaping."""
        with contextlib.suppress(ProcessLookupError):  # the group is already empty
            os.killpg(worker.proc.pid, signal.SIGKILL)

    def _retire(self, worker: _Worker, *, kill: bool) -> str:
        """Kill (if asked) and reap the worker, close its pipes; return its exit status."""
        with self._cond:
            self._all.discard(worker)
            if worker.retired:
                return "retired"
            worker.retired = True
        if kill and not _wait_exit(worker.pidfd, 0):
            self._count("agent.workers_killed")
            log.debug("agent worker %d killed", worker.proc.pid)
        self._kill(worker)  # also the group's strays, before the leader is reaped
        try:
            code = worker.proc.wait(REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("agent worker %d did not die after SIGKILL", worker.proc.pid)
            code = None
        os.close(worker.pidfd)
        worker.drain.join(1.0)
        for stream in (worker.proc.stdin, worker.proc.stdout):
            if stream is not None:
                stream.close()
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    def _count(self, name: str) -> None:
        if self.counters is not None:
            self.counters.inc(name)


def _drain(worker: _Worker) -> None:
    """Read the worker's stderr to its end, keeping a bounded tail and logging at debug."""
    assert worker.proc.stderr is not None
    fd, pid = worker.proc.stderr.fileno(), worker.proc.pid
    partial = b""
    while chunk := os.read(fd, 65536):
        *lines, partial = (partial + chunk).split(b"\n")
        partial = partial[-STDERR_TAIL_BYTES:]  # a line without end is kept bounded
        for line in lines:
            worker.tail.append(line[-STDERR_TAIL_BYTES:] + b"\n")
            log.debug("agent worker %d: %s", pid, line.decode("utf-8", "replace").rstrip())
    if partial:
        worker.tail.append(partial)
    worker.proc.stderr.close()


def _wait_exit(pidfd: int, timeout: float) -> bool:
    """True once the process has exited (without reaping it), False after ``timeout``."""
    return bool(select.select([pidfd], [], [], max(0.0, timeout))[0])


def _worker_env(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    root = str(Path(__file__).resolve().parents[2])  # the directory that holds baton/
    paths = [root, *(p for p in sys.path if p)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
