"""What `baton demo` and the chaos campaign share: a mesh of real machines against the
bundled chat service, a steady load, a watcher of every machine's role, and the verdict.

- ``Run`` owns a temporary directory, the chat service, a bare git remote as lease store
  and the machines (baton.demo.devmesh), and tears all of it down in ``close`` (also after a
  failure or Ctrl-C): paused machines are continued first, then stopped by pid.
- ``Loader`` posts messages round-robin over topics at a steady rate from its own thread
  and records a "posted" event per message.
- ``Watcher`` polls every machine's /api/status from its own thread, keeps the newest
  view of each (for a live display) and merges their lease histories into "role"
  events (each machine's history is in memory, so it must be read before a kill).
- ``History`` is the run's record (JSON lines in the run directory): posted, role, fault
  and step events, thread-safe; ``verdict`` judges it with baton.demo.verdict.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from baton.adapters.system_clock import SystemClock
from baton.agents.builtin import ECHO_STATE_FILE
from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh, wait_for
from baton.demo.verdict import Report, ambiguous_sends, check
from baton.stores.git_cli import WITHOUT_USER_CONFIG
from baton.stores.state_repo import REF as STATE_REF

_TURNS = re.compile(r"\(earlier turns: (\d+)\)$")


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """Inside, SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does, so a closed
    terminal or a `kill` still stops every machine the run started (they lead their own
    sessions: nothing else would stop them)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8") if path else None

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"kind": kind, "at": round(time.time(), 3), **fields}
        with self._lock:
            self.events.append(event)
            if self._file is not None:  # after close, a late event stays in memory only
                self._file.write(json.dumps(event) + "\n")
                self._file.flush()
        return event

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["kind"] == kind]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Run:
    """A mesh of ``names`` with a git lease store (ttl ``ttl_ms``) answering the chat
    service with the echo agent, in a fresh temporary directory."""

    def __init__(
        self,
        names: Iterable[str],
        ttl_ms: int,
        keep: bool = False,
        prefix: str = "baton-demo-",
        sink: str = "fencing",
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.root.chmod(0o700)
        self.keep = keep
        self.ttl_ms = ttl_ms
        self.history = History(self.root / "history.jsonl")
        # "fencing": the bundled chat service as it is; "telegram": it behaves like
        # Telegram (no reply keys, no epochs: it forgives nothing) and baton speaks to
        # it as to Telegram
        self.sink = sink
        self.chat = ChatServer(self.root / "chat.sqlite", mode=sink)
        self.mesh = Mesh(self.root, list(names))
        self.store = self.root / "lease.git"
        self.paused: set[str] = set()
        for m in self.mesh.machines:
            m.env["BATON_LEASE_TTL_MS"] = str(ttl_ms)

    def start(self, before_up: Callable[[Machine], None] | None = None) -> None:
        """Chat service, then init every machine, pair them with real codes, start them."""
        self.chat.start()
        first, *others = self.mesh.machines
        for m in self.mesh.machines:
            m.env.update(self.chat.machine_env())  # its tokens: environment, not argv
            if before_up:
                before_up(m)
        scheme = "local" if self.sink == "fencing" else "telegram"
        channel = ("--channel", f"{scheme}:{self.chat.url}", "--agent", "echo")
        first.init(None, None, "--lease-store", f"git+file://{self.store}", *channel)
        for m in others:
            m.init()
        self.mesh.pair_up()
        for m in self.mesh.machines:
            wait_for(lambda m=m: m.status().get("holder"), 60, f"{m.name} to see a holder")  # type: ignore[misc]

    def sends(self) -> list[dict[str, Any]]:
        return list(self.chat.api("/api/sends")["sends"])

    def topic(self, topic: str) -> list[dict[str, Any]]:
        return list(self.chat.api(f"/api/topics/{topic}/messages")["messages"])

    def close(self) -> None:
        for m in self.mesh.machines:  # a stopped process cannot hear `baton down`
            with contextlib.suppress(Exception):
                m.send_signal(signal.SIGCONT)
        self.mesh.stop()
        self.chat.stop()
        self.history.close()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


class Loader(threading.Thread):
    """Posts ``rate`` messages a second round-robin over ``topics`` until stopped. With
    ``max_unanswered``, a closed loop: while that many posted messages are unanswered it
    waits, as a person waits for replies (``held_s`` says how long, in all). An open loop
    on a host whose share of the CPU nobody knows offers more than the mesh can answer,
    and the backlog, not a fault, decides whether every message is answered in time."""

    CHECK_S = 0.5  # how often a closed loop that waits reads what is answered

    def __init__(
        self, run: Run, topics: list[str], rate: float, max_unanswered: int | None = None
    ) -> None:
        super().__init__(name="baton-demo-load", daemon=True)
        self.run_, self.topics, self.gap = run, topics, 1.0 / rate
        self.max_unanswered = max_unanswered
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.held_s = 0.0
        self.known = self.since = 0  # unanswered at the last reading; posted since

    def run(self) -> None:
        n = 0
        try:
            while not self.stop_event.wait(self.gap) and self._hold():
                topic = self.topics[n % len(self.topics)]
                body = {"text": f"m{n}", "client_id": f"load-{n:08d}"}
                path = f"/api/topics/{topic}/messages"
                message_id = int(self.run_.chat.api(path, body)["message_id"])
                self.run_.history.add("posted", message_id=message_id, topic=topic)
                n += 1
        except BaseException as exc:  # the run reports it; the thread must not vanish
            self.error = exc

    def _hold(self) -> bool:
        """Whether to post the next message: at once, in an open loop or while what was
        posted since the last reading cannot reach the limit (the list of sends grows
        with the run); else once fewer are unanswered. False: the loader was stopped."""
        self.since += 1
        if self.max_unanswered is None or self.known + self.since <= self.max_unanswered:
            return True
        began = time.monotonic()
        try:
            while (known := len(unanswered(self.run_))) >= self.max_unanswered:
                if self.stop_event.wait(self.CHECK_S):
                    return False
        finally:  # a hold the stop ended counts too: it is the stall a run must show
            self.held_s += time.monotonic() - began
        self.known, self.since = known, 1
        return True

    def stop(self) -> None:
        self.stop_event.set()
        if self.is_alive():  # never started when the run failed (or was stopped) before it
            self.join(30)


class Watcher(threading.Thread):
    """Every ``interval`` s: each machine's status; new lease-history entries become role
    events. ``views[name]`` is the newest status (None while it does not answer)."""

    def __init__(self, run: Run, interval: float = 0.25) -> None:
        super().__init__(name="baton-demo-watch", daemon=True)
        self.run_, self.interval = run, interval
        self.views: dict[str, dict[str, Any] | None] = {m.name: None for m in run.mesh.machines}
        self._seen: dict[str, set[tuple[Any, ...]]] = {m.name: set() for m in run.mesh.machines}
        self._lock = threading.Lock()
        self._polling = threading.Lock()  # one poll at a time: events stay in order
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            for m in self.run_.mesh.machines:
                if m.name not in self.run_.paused:
                    try:
                        self.poll(m)
                    except Exception as exc:  # kept for the report; the watching goes on
                        self.error = exc

    def poll(self, m: Machine) -> dict[str, Any] | None:
        """Read ``m`` now (before a kill, so its history is not lost with it)."""
        with self._polling:
            return self._poll(m)

    def _poll(self, m: Machine) -> dict[str, Any] | None:
        try:
            view: dict[str, Any] | None = m.status(timeout=1.0)
        except Exception:
            view = None
        with self._lock:
            self.views[m.name] = view
            for entry in (view or {}).get("history", []):
                key = (entry["at_ms"], entry["role"], entry["epoch"])
                if key not in self._seen[m.name]:
                    self._seen[m.name].add(key)
                    self.run_.history.add("role", machine=m.name, **entry)
        return view

    def died(self, m: Machine) -> None:
        """``m`` was just killed: whatever stretch as holder it had ends now. No poll of
        ``m`` begun before the kill lands after this event: polls take turns."""
        with self._polling:
            self._poll(m)
            now = SystemClock().monotonic_ms()  # the nodes' clock for histories
            self.run_.history.add(
                "role", machine=m.name, role="dead", epoch=None, at_ms=now, acted_until_ms=now
            )

    def stopped(self, m: Machine, stop: Callable[[], object]) -> None:
        """``m`` is stopped cleanly by ``stop`` (`baton down`): its stretch as holder ends
        when the stop was asked. The node stands down before it releases the lease, so
        nobody acquires before that; but it may still act while it shuts down, so an
        overlap in that window would go unseen (a limit of this record)."""
        with self._polling:
            self._poll(m)
            asked = SystemClock().monotonic_ms()
            stop()
            self.run_.history.add(
                "role", machine=m.name, role="dead", epoch=None, at_ms=asked, acted_until_ms=asked
            )

    def holder(self) -> tuple[str, int] | None:
        """(name, epoch) of the machine that last said it is awake, at the highest epoch."""
        with self._lock:
            awake = [(v["epoch"], n) for n, v in self.views.items() if v and v["role"] == "awake"]
        if not awake:
            return None
        epoch, name = max(awake)
        return name, epoch

    def stop(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(10)


def transcript_loss(run: Run, topics: list[str]) -> int:
    """Turns the agent lost from its history, summed over topics: the echo agent says how
    many earlier turns it saw; the first reply to the k-th message answered in a topic
    should have seen k - 1 (fewer means turns dropped by a crash before they reached a
    standby). A message answered twice (a reported ambiguous send) is one turn."""
    lost = 0
    for topic in topics:
        first: dict[int, str] = {}  # the message answered -> its first reply, in order
        for m in run.topic(topic):
            if m["from"] == "bot":
                first.setdefault(m["reply_to"], m["text"])
        replies = list(first.values())
        if replies and (found := _TURNS.search(replies[-1])):
            lost += max(0, len(replies) - 1 - int(found.group(1)))
    return lost


def pushed_state(run: Run) -> list[str]:
    """The echo agent's state file as the remote has it (StateSync pushes it there)."""
    proc = subprocess.run(
        ["git", f"--git-dir={run.store}", "show", f"{STATE_REF}:{ECHO_STATE_FILE}"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **WITHOUT_USER_CONFIG},
    )
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def state_lines(m: Machine) -> list[str]:
    """The echo agent's state file in ``m``'s state directory."""
    try:
        return (m.home / "state" / ECHO_STATE_FILE).read_text().splitlines()
    except OSError:
        return []


def unanswered(run: Run) -> set[int]:
    """The posted messages no reply was accepted for (yet)."""
    posted = {e["message_id"] for e in run.history.of("posted")}
    return posted - {s["reply_to"] for s in run.sends() if s["outcome"] == "accepted"}


def all_answered(run: Run) -> bool:
    return not unanswered(run)


def verdict(run: Run) -> tuple[Report, list[dict[str, Any]]]:
    sends = run.sends()
    logs = [p for m in run.mesh.machines for p in sorted(m.paths.logs_dir.glob("*.log*"))]
    return check(run.history.events, sends, ambiguous=ambiguous_sends(logs)), sends
