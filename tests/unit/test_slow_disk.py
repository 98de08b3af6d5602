"""tools/faults/slow_disk: a process started with its variables waits before each
fsync and fdatasync (the shim built with gcc, which the CI image has); one without
them does not wait; bad delays and a missing command are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.faults import slow_disk

pytestmark = pytest.mark.timeout(180)

TIMED = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
started = time.monotonic()
os.fsync(fd)
os.fdatasync(fd)
print(time.monotonic() - started)
"""


def took(tmp_path: Path, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-c", TIMED, str(tmp_path / "f")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    return float(out.stdout)


def test_each_fsync_and_fdatasync_waits_the_delay_first(tmp_path: Path) -> None:
    extra = slow_disk.env(150, cache=tmp_path / "cache")
    assert extra["SLOW_FSYNC_US"] == "150000"
    assert Path(extra["LD_PRELOAD"].split()[-1]).exists()
    assert took(tmp_path, extra) >= 0.3  # two calls, each at least the delay
    assert slow_disk.build(tmp_path / "cache") == Path(extra["LD_PRELOAD"].split()[-1])


def test_the_command_line_runs_the_command_under_it_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slow_disk, "CACHE", tmp_path / "cache")
    marker = tmp_path / "ran"
    code = "import os, sys; open(sys.argv[1], 'w').write(os.environ['SLOW_FSYNC_US'])"
    assert slow_disk.main(["5", "--", sys.executable, "-c", code, str(marker)]) == 0
    assert marker.read_text() == "5000"
    assert (tmp_path / "cache" / "slow_fsync.so").exists()  # built where it was told
    assert slow_disk.main(["20000", "--", "true"]) == 2
    assert "0 to 10000 ms" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        slow_disk.main(["5"])  # no command
