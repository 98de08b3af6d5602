"""Process faults on a baton machine: kill -9, pause (SIGSTOP) and resume (SIGCONT).

``kill`` hits the node alone by default: its supervisor sees the crash and starts a new
node, which rejoins as a standby, as after a real crash. ``whole=True`` kills the
supervisor too, so the machine stays down until someone runs ``baton up`` again
(``restart``). ``pause`` stops the supervisor and the node together, so the supervisor
cannot mistake the silence for a crash; ``resume`` continues both. Each returns the
pids it signalled (empty when nothing ran). Signals go through pidfds, so a pid that
was reused in the meantime is never hit.
"""

from __future__ import annotations

import signal

from baton.demo.devmesh import Machine


def kill(m: Machine, whole: bool = False) -> list[int]:
    if whole:
        return _signal(m, signal.SIGKILL, "supervisor", "node")
    return _signal(m, signal.SIGKILL, "node")


def pause(m: Machine) -> list[int]:
    return _signal(m, signal.SIGSTOP, "supervisor", "node")


def resume(m: Machine) -> list[int]:
    return _signal(m, signal.SIGCONT, "supervisor", "node")


def restart(m: Machine) -> None:
    """``baton up --detach`` again (after ``kill(m, whole=True)``)."""
    m.up()


def _signal(m: Machine, sig: signal.Signals, *which: str) -> list[int]:
    live = m.live_pids()
    hit = []
    for name in which:
        pid = live[name]
        if pid and m.signal_pid(pid, sig):
            hit.append(pid)
    return hit
