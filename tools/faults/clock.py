"""Wall-clock jumps with libfaketime: a machine started under ``faketime_env(file)`` reads
its wall clock (time.time, CLOCK_REALTIME) as the true time plus the offset written in
``file`` ("+10m", "-7m", "+0"), re-read every second. Monotonic clocks (CLOCK_BOOTTIME,
which baton's lease runs on) are left alone (``FAKETIME_DONT_FAKE_MONOTONIC=1``), so a
jump is exactly what an NTP step or a user changing the clock does to a machine.

libfaketime 0.9.10 (Debian's) breaks Python's time.sleep when monotonic clocks are left
alone (its issue #426); the processes started under it load ``faketime_shim`` (through
PYTHONPATH), which sleeps on a condition variable instead. Nothing in baton changes.
The shim also keeps a process from inheriting its parent's libfaketime shared memory
(see it); what a killed process leaves in /dev/shm is swept by ``sweep``.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable
from pathlib import Path

from baton.demo.devmesh import pid_alive

SHIM = Path(__file__).parent / "faketime_shim"
SHM = Path("/dev/shm")
_PATTERNS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib*/faketime/libfaketime.so.1")


def libfaketime() -> str | None:
    """The library's path, or None when it is not installed (CI installs it)."""
    found = sorted(path for pattern in _PATTERNS for path in glob.glob(pattern))
    return found[0] if found else None


def faketime_env(offset_file: Path, offset: str | None = "+0") -> dict[str, str]:
    """The environment that puts a process's wall clock under ``offset_file``, set to
    ``offset`` (None: left as it is, "+0" if there is none yet)."""
    library = libfaketime()
    if library is None:
        raise RuntimeError("libfaketime is not installed (apt-get install libfaketime)")
    if offset is not None or not offset_file.exists():
        jump(offset_file, offset or "+0")
    return {
        "LD_PRELOAD": library,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_CACHE_DURATION": "1",
        "PYTHONPATH": str(SHIM),
    }


def jump(offset_file: Path, offset: str) -> None:
    """Set the offset (e.g. "+10m", "-90s", "+0"): the clock jumps within a second."""
    tmp = offset_file.with_name(offset_file.name + ".tmp")
    tmp.write_text(offset + "\n")
    os.replace(tmp, offset_file)


def sweep(pids: Iterable[int]) -> int:
    """Remove what libfaketime left in /dev/shm for each of ``pids`` that has ended (a
    process killed with SIGKILL never unlinks its own); how many files went."""
    removed = 0
    for pid in pids:
        if pid_alive(pid):
            continue
        for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
            with contextlib.suppress(FileNotFoundError):
                (SHM / name).unlink()
                removed += 1
    return removed
