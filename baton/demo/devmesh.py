"""Start N baton machines as real processes on loopback, and always tear them down.

Used by `baton demo`, the chaos campaign, the benchmarks and the system tests (it is in
the package so that `baton demo` runs from an installed baton).

Each machine gets its own home and free ports; `up` waits until every node answers
/health; `link` admits every machine into every other's registry (the stop-gap of
issue 3, for tests of the wire alone); `pair_up` builds a real mesh: the first machine
starts (and takes the lease, with a lease store), the others join it with pairing
codes and start. Teardown runs `baton down` and then kills by pid whatever is left.

For humans: ``python tools/mesh.py up 3 --dir /tmp/mesh`` (see there). Tests use the
Mesh class through the fixtures in tests/system/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from baton.node.client import NodeClient
from baton.stores.home import HomePaths
from baton.stores.runfile import lock_holder

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
        last = predicate()
    return last


def free_port(host: str = "127.0.0.1") -> int:
    """A port that binds on ``host`` now and that no other devmesh process on this host
    has handed out lately, chosen below the kernel's ephemeral range: a port picked from
    inside it can be taken, once released, as the local port of any outgoing connection
    (another test's, say) before its machine binds it again after a restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = _ephemeral_low()
    tries = 200 if low - 1024 >= 1000 else 0  # a host whose ephemeral range starts low
    for _ in range(tries):
        port = random.randrange(max(1024, low - 12000), low)
        if _binds(family, host, port) and _reserve(port):
            return port
    with socket.socket(family) as sock:  # there is no room below it: any free port
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _binds(family: socket.AddressFamily, host: str, port: int) -> bool:
    with socket.socket(family) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


RESERVED = 128  # the picks a process holds on to: its machines may restart on them
_reserved: deque[socket.socket] = deque()


def _reserve(port: int) -> bool:
    """Hold ``port`` for as long as this process lives (its last RESERVED picks): a
    port that binds now is free only until its machine starts, and tests side by side
    (pytest-xdist workers, a campaign they run) would otherwise pick the same one in
    that window. The hold is an abstract unix socket named after the port, which the
    kernel frees when the process ends, however it ends; elsewhere than Linux, none."""
    if not sys.platform.startswith("linux"):
        return True
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(f"\0baton-devmesh-port-{port}")
    except OSError:
        sock.close()
        return False
    _reserved.append(sock)
    while len(_reserved) > RESERVED:
        _reserved.popleft().close()
    return True


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def kill_if_same(pid: int, started: int | None) -> None:
    """SIGKILL ``pid`` only if it is still the process that started at ``started``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except FileNotFoundError:
        # ENOENT, not ESRCH: the kernel says so of a process whose leader has exited
        # while it is not yet gone (CI met it as a machine stopped); kill it by pid if
        # it is still the same process, else nothing is there
        if started is not None and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return
    try:
        if started is not None and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        os.close(fd)


_STATUS = """
import json, sys
from pathlib import Path
from baton.node.client import NodeClient
print(json.dumps(NodeClient(Path(sys.argv[1]), timeout=float(sys.argv[2])).get("/api/status")))
"""


class Machine:
    def __init__(self, name: str, home: Path) -> None:
        self.name = name
        self.home = home
        self.paths = HomePaths(home)
        self.pids: dict[int, int | None] = {}  # pid -> start time, of every process we ran
        self.env: dict[str, str] = {}  # BATON_* settings for every command of this machine
        self.prefix: list[str] = []  # runs every command under it (e.g. ip netns exec NS)
        self.host = "127.0.0.1"  # the address its HTTP and wire bind to
        self.python = sys.executable  # the Python (and so the installed baton) it runs

    def remember(self, *pids: int | None) -> None:
        for pid in pids:
            if pid and pid > 0 and pid not in self.pids:
                self.pids[pid] = start_time(pid)

    def baton(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 90.0,
        env_extra: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env.update(self.env)
        env.update(env_extra or {})
        cmd = [*self.prefix, self.python, "-P", "-m", "baton", *args, "--home", str(self.home)]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} on {self.name} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.baton(*args, "--json", **kw).stdout)

    def init(
        self, http_port: int | None = None, wire_port: int | None = None, *extra: str
    ) -> dict[str, Any]:
        http_port = http_port or free_port(self.host)
        wire_port = wire_port or free_port(self.host)
        return dict(
            self.json(
                "init",
                "--name",
                self.name,
                "--http",
                f"{self.host}:{http_port}",
                "--wire",
                f"{self.host}:{wire_port}",
                *extra,
            )
        )

    def up(self) -> dict[str, Any]:
        return self.up_with()

    def up_with(self, *flags: str) -> dict[str, Any]:
        """`baton up --detach` with ``flags`` (e.g. --wire HOST:PORT for this run)."""
        info = dict(self.json("up", "--detach", *flags))
        self.remember(info["pid"], info["node_pid"])
        return info

    def live_pids(self) -> dict[str, int | None]:
        return {
            "supervisor": lock_holder(self.paths.supervisor_lock),
            "node": lock_holder(self.paths.node_lock),
        }

    def card(self) -> dict[str, Any]:
        return dict(self.json("whoami"))

    def status(self, timeout: float = 30.0) -> dict[str, Any]:
        """What `baton status --json` prints, asked over HTTP in this process: the same
        call the command makes, without starting a Python for every look (tests poll it).
        Under a prefix (a network namespace) that call runs there, in a Python that
        imports only the client (a fifth of the CLI's start-up: tests poll it)."""
        if not self.prefix:
            return dict(NodeClient(self.home, timeout=timeout).get("/api/status"))
        cmd = [*self.prefix, self.python, "-P", "-c", _STATUS, str(self.home), str(timeout)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"status on {self.name} exited {proc.returncode}: {proc.stderr}")
        return dict(json.loads(proc.stdout))

    def signal_pid(self, pid: int, sig: signal.Signals) -> bool:
        """Send ``sig`` to ``pid`` (one of this machine's) through a pidfd; False if it
        was gone."""
        self.remember(pid)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)
        return True

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to this machine's supervisor and node (kill -9, SIGSTOP, SIGCONT)."""
        for pid in self.live_pids().values():
            if pid:
                self.signal_pid(pid, sig)

    def signal_node(self, sig: signal.Signals) -> int | None:
        """Send ``sig`` to the node alone (its supervisor restarts it after a kill -9);
        the node's pid, or None if none runs."""
        pid = self.live_pids()["node"]
        if pid:
            self.signal_pid(pid, sig)
        return pid

    def counter(self, name: str) -> int:
        """One of the node's counters (0 if it never counted)."""
        return int(self.status()["counters"].get(name, 0))

    def stop(self, timeout: float = 30.0) -> None:
        """`baton down`, then SIGKILL whatever of this machine still lives (never a reused pid)."""
        self.remember(*self.live_pids().values())
        with contextlib.suppress(Exception):
            self.baton("down", "--timeout", str(timeout), check=False, timeout=timeout + 30)
        for pid, started in self.pids.items():
            kill_if_same(pid, started)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not self.survivors(), 10, "processes to die")

    def survivors(self) -> list[int]:
        """Processes this machine ran that are still alive (same pid and start time)."""
        return [p for p, t in self.pids.items() if pid_alive(p) and start_time(p) == t]


# Asking every machine's status is not free for a busy node (each answer asks several
# actors): whoever waits for a mesh to be in sync polls at this pace, not 20 times a second.
SYNC_POLL_S = 0.5


class Mesh:
    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.machines = [Machine(name, root / name) for name in names]

    @classmethod
    def of(cls, root: Path, n: int) -> Mesh:
        return cls(root, [f"m{i + 1}" for i in range(n)])

    def __getitem__(self, index: int) -> Machine:
        return self.machines[index]

    def init(self, *extra: str) -> None:
        for m in self.machines:
            m.init(None, None, *extra)

    def pair_up(self, timeout: float = 60.0) -> None:
        """Start the first machine, then pair each other one into its mesh and start it."""
        first, *others = self.machines
        first.up()
        wait_for(lambda: first.status()["role"] == "awake", timeout, f"{first.name} awake")
        for m in others:
            session = wait_for(partial(_pair_session, first), timeout, "a pairing session", 0.5)
            m.json("join", session["url"], "--code", session["code"], "--yes", "--trust-agent")
            m.up()

    def up(self) -> None:
        for m in self.machines:
            m.up()

    def link(self) -> None:
        cards = {m.name: m.card() for m in self.machines}
        for m in self.machines:
            for other in self.machines:
                if other is not m:
                    m.json("machines", "add", "-", input=json.dumps(cards[other.name]))

    def wait_all_reachable(self, timeout: float = 60.0) -> None:
        expected = len(self.machines) - 1
        for m in self.machines:
            wait_for(partial(_all_reachable, m, expected), timeout, f"{m.name} to reach its peers")

    def synced_holder(self, but: Machine | None = None) -> Machine | None:
        """The awake machine, once its lease record names every other machine that
        answers in sync (only those take over by themselves); None until then. ``but``
        (perhaps paused) is not asked."""
        views: dict[str, dict[str, Any]] = {}
        for m in self.machines:
            if m is not but:
                with contextlib.suppress(Exception):  # a node being restarted: not up
                    views[m.name] = m.status(timeout=5)
        awake = [n for n, v in views.items() if v["role"] == "awake"]
        if len(awake) != 1:
            return None
        view = views[awake[0]]
        others = {v["machine_id"] for n, v in views.items() if n != awake[0]}
        if not others <= set(view.get("in_sync") or ()):
            return None
        return next(m for m in self.machines if m.name == awake[0])

    def stop(self) -> None:
        """Every machine at once: each `baton down` waits for its node, and they do not
        wait for each other."""
        with ThreadPoolExecutor(max(1, len(self.machines))) as pool:
            list(pool.map(Machine.stop, self.machines))


def _pair_session(m: Machine) -> dict[str, Any] | None:
    """`baton pair` on ``m``; None when it says to try again (a holder whose renewal
    was late for a moment, under load, stands by until it is confirmed)."""
    proc = m.baton("pair", "--json", check=False)
    if proc.returncode == 0:
        return dict(json.loads(proc.stdout))
    if "try again" in proc.stdout:
        return None
    raise RuntimeError(f"pair --json on {m.name} exited {proc.returncode}:\n{proc.stdout}")


def _all_reachable(m: Machine, expected: int) -> bool:
    peers = m.status()["peers"]
    return len(peers) == expected and all(p["reachable"] for p in peers)
