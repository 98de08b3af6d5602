"""Running a whole command that starts machines of its own (`baton demo`, a chaos
campaign) under a test: its own TMPDIR, a timeout that interrupts before it kills, and
a way to find every process it started (they all inherit that TMPDIR)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def processes_under(path: Path) -> list[int]:
    """Live processes started for a run under ``path``: every one of them (supervisors,
    nodes, agent workers) inherits TMPDIR=path from the command the test ran."""
    mark = f"TMPDIR={path}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark in environ and (entry / "stat").read_text().split(") ", 1)[1][:1] != "Z":
            found.append(int(entry.name))
    return found


def _as_at_a_terminal() -> None:
    """In the child before it runs: SIGINT and SIGQUIT as a terminal's foreground job has
    them. A suite started in the background by a shell without job control (``cmd &``
    in a script, as CI runners and record tools do) inherits them ignored, and a Python
    that starts with SIGINT ignored never turns Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def run_under(tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        preexec_fn=_as_at_a_terminal,
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``proc``'s output once it ends. If it overruns: SIGINT first (it stops what it
    started), SIGKILL only after, and the test fails with the timeout."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise
