"""`baton demo` end to end, as a newcomer runs it: a summary with nothing lost or doubled,
nothing left behind, a clean stop on Ctrl-C, and exit 1 when a promise was broken."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from baton.cli import main
from baton.demo import Demo

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

KEYS = {
    "messages",
    "replies",
    "lost",
    "duplicated",
    "stale_refused",
    "failover_s",
    "handoff_s",
    "transcript_loss",
    "ok",
}


def processes_under(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (the demo's machines)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(path) in cmdline:
                found.append(int(entry.name))
    return found


def demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "baton", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_demo_keeps_every_promise_and_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = demo(tmp_path, "--json")
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert set(summary) >= KEYS, summary
    assert summary["ok"] is True
    assert summary["lost"] == 0 and summary["duplicated"] == 0
    assert summary["messages"] == summary["replies"] > 100
    assert summary["stale_accepted"] == 0 and summary["overlapping"] == 0
    assert 0 < summary["failover_s"] < 60 and 0 < summary["handoff_s"] < 60
    assert summary["epoch"] >= 4, "a failover, a handoff and a takeover after the pause"
    assert "step: kill -9 the awake machine" in err, "progress goes to stderr under --json"
    assert not list(tmp_path.glob("baton-demo-*")), "the run's directory was removed"
    assert not processes_under(tmp_path)


def test_ctrl_c_stops_the_demo_and_cleans_up(tmp_path: Path) -> None:
    proc = demo(tmp_path)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stdout:  # no live view without a terminal: one line a step
            if line.startswith("done: steady load"):
                break
        else:
            pytest.fail("the demo never got its load going")
        assert list(tmp_path.glob("baton-demo-*")), "it runs in its own directory"
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in rest
    assert not list(tmp_path.glob("baton-demo-*"))
    assert not processes_under(tmp_path)


@pytest.mark.parametrize(
    "verdict, code, words",
    [
        ({"ok": True, "lost": 0}, 0, "every promise kept"),
        ({"ok": False, "lost": 3}, 1, "A PROMISE WAS BROKEN"),
        ({"ok": False, "error": "TimeoutError: a step"}, 2, "could not finish: TimeoutError"),
    ],
)
def test_the_exit_code_says_whether_a_promise_was_broken(
    monkeypatch: pytest.MonkeyPatch, verdict: dict[str, object], code: int, words: str
) -> None:
    monkeypatch.setattr(Demo, "main", lambda self: dict(verdict))
    result = CliRunner().invoke(main, ["demo", "--json"])
    assert result.exit_code == code
    assert json.loads(result.output) == verdict
    human = CliRunner().invoke(main, ["demo"])
    assert human.exit_code == code
    assert words in human.output
