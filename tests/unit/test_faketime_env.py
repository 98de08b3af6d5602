"""The clock-jump fault's environment (tools/faults/clock.py and its shim): no process
inherits another's libfaketime shared memory, and what a killed one left is swept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.faults import clock


def test_a_process_under_the_shim_does_not_pass_its_parents_shared_memory_on() -> None:
    env = {**os.environ, "PYTHONPATH": str(clock.SHIM), "FAKETIME_SHARED": "/sem_1 /shm_1"}
    code = "import os, subprocess, sys; print(os.environ.get('FAKETIME_SHARED'));"
    code += "sys.stdout.flush(); subprocess.run(['sh', '-c', 'echo child:$FAKETIME_SHARED'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "child:"]


def test_sweep_removes_what_ended_processes_left_and_nothing_of_a_live_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock, "SHM", tmp_path)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=60)
    alive = os.getpid()
    for pid in (ended.pid, alive):
        (tmp_path / f"faketime_shm_{pid}").write_text("")
        (tmp_path / f"sem.faketime_sem_{pid}").write_text("")
    (tmp_path / "faketime_shm_other").write_text("")
    assert clock.sweep([ended.pid, alive]) == 2
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        ["faketime_shm_other", f"faketime_shm_{alive}", f"sem.faketime_sem_{alive}"]
    )
    assert clock.sweep([ended.pid]) == 0
