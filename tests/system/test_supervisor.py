"""The supervisor's restart policy, with stand-in nodes as real spawned processes."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from baton.demo.devmesh import pid_alive
from baton.node.supervisor import EXIT_CRASH_LOOP, Policy, Supervisor
from baton.stores.home import HomePaths
from tests.system import targets
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

FAST = Policy(backoff_s=(0.01, 0.05), crash_limit=3, crash_window_s=60, stop_timeout_s=10)


def starts(home: Path) -> list[int]:
    path = home / "starts"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_a_crash_loop_gives_up_loudly(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, {}, FAST, target=targets.crash_at_once)
    assert sup.run(install_signals=False) == EXIT_CRASH_LOOP
    assert len(starts(tmp_path)) == FAST.crash_limit
    last = json.loads(HomePaths(tmp_path).last_error.read_text())
    assert last["error"] == "crash_loop" and "3 times" in last["detail"]


def test_a_fatal_start_is_not_retried(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, {}, FAST, target=targets.fatal_at_once)
    assert sup.run(install_signals=False) == 78
    assert len(starts(tmp_path)) == 1
    assert sup.error == {"ok": False, "error": "config_error", "detail": "lease_ttl_ms: too small"}


def test_a_killed_node_is_restarted_and_stop_leaves_nothing(tmp_path: Path) -> None:
    ready: list[int] = []
    sup = Supervisor(
        tmp_path,
        {},
        FAST,
        on_ready=lambda info: ready.append(info["pid"]),
        target=targets.ready_then_wait,
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(sup.run(install_signals=False)))
    thread.start()
    try:
        first = wait_for(lambda: ready[:1], 60, "the first node to be ready")[0]
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: ready[1:2], 60, "the restarted node")[0]
        assert second != first and pid_alive(second)
    finally:
        sup.request_stop()
        thread.join(60)
    assert result == [0] and not thread.is_alive()
    assert not any(pid_alive(p) for p in starts(tmp_path))


def test_a_node_that_never_reports_ready_is_killed_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Counted by the supervisor's own word: a child the host was too busy to start
    within the second (CI met one) is killed before it can note its start."""
    policy = Policy(backoff_s=(0.01, 0.05), crash_limit=2, crash_window_s=60, ready_timeout_s=1)
    sup = Supervisor(tmp_path, {}, policy, target=targets.never_ready)
    with caplog.at_level("ERROR", logger="baton.supervisor"):
        assert sup.run(install_signals=False) == EXIT_CRASH_LOOP
    killed = [r for r in caplog.records if "did not report ready" in r.getMessage()]
    assert len(killed) == 2
    started = starts(tmp_path)
    assert len(started) <= 2 and not any(pid_alive(p) for p in started)


def test_a_second_supervisor_on_the_same_home_is_refused(tmp_path: Path) -> None:
    from baton.core.errors import AlreadyRunning
    from baton.stores.runfile import ProcessLock

    lock = ProcessLock(HomePaths(tmp_path).supervisor_lock, "supervisor")
    lock.acquire()
    try:
        with pytest.raises(AlreadyRunning) as info:
            Supervisor(tmp_path, {}, FAST, target=targets.crash_at_once).run(install_signals=False)
        assert str(os.getpid()) in info.value.detail
    finally:
        lock.release()
    assert starts(tmp_path) == []


def test_a_restart_the_node_asked_for_is_no_crash(tmp_path: Path) -> None:
    """Four restarts asked for (EXIT_RESTART) count nothing; then three crashes end it."""
    sup = Supervisor(tmp_path, {}, FAST, target=targets.restart_asked_then_crash)
    assert sup.run(install_signals=False) == EXIT_CRASH_LOOP
    assert len(starts(tmp_path)) == 4 + FAST.crash_limit
