"""A slow disk: every fsync and fdatasync of a process (SQLite's commits, git's) waits a
fixed time first, through an LD_PRELOAD shim (``slow_fsync.c``, built with gcc on first
use into a cache directory). A disk with a write cache answers an fsync in 0.1 ms; CI's
may take tens of ms, and under it a mailbox falls behind where a fast disk hides a race
(issue 20: a takeover's replay ran before the TurnSeen queued behind it, and lost a
turn only there).

    python -m tools.faults.slow_disk 60 -- .venv/bin/python -m pytest tests/system/test_pool.py

runs the command (and every process it starts: the nodes inherit the environment) with
each fsync 60 ms slower. ``env(ms)`` gives the variables for a process of your own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("slow_fsync.c")
CACHE = Path(tempfile.gettempdir()) / f"baton-slow-disk-{os.getuid()}"


class NoCompiler(RuntimeError):
    """gcc is not on PATH: the shim cannot be built."""


def build(cache: Path | None = None) -> Path:
    """The shim's shared library (in ``cache``, else CACHE), built again when its
    source changed."""
    cache = cache or CACHE
    lib = cache / "slow_fsync.so"
    if lib.exists() and lib.stat().st_mtime >= SOURCE.stat().st_mtime:
        return lib
    gcc = shutil.which("gcc")
    if gcc is None:
        raise NoCompiler("gcc is needed to build tools/faults/slow_fsync.c")
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = cache / f"slow_fsync.{os.getpid()}.so"
    cmd = [gcc, "-shared", "-fPIC", "-O2", "-o", str(part), str(SOURCE), "-ldl"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    part.replace(lib)  # whole, or not at all, for a process that loads it meanwhile
    return lib


def env(delay_ms: float, cache: Path | None = None) -> dict[str, str]:
    """The variables that make a process's (and its children's) fsyncs ``delay_ms``
    slower."""
    if not 0 <= delay_ms <= 10_000:
        raise ValueError("the delay is 0 to 10000 ms")
    preload = " ".join(p for p in (os.environ.get("LD_PRELOAD"), str(build(cache))) if p)
    return {"LD_PRELOAD": preload, "SLOW_FSYNC_US": str(round(delay_ms * 1000))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.faults.slow_disk",
        description="Run a command with every fsync and fdatasync slowed (LD_PRELOAD).",
    )
    parser.add_argument("delay_ms", type=float, help="each fsync waits this long first")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is needed (after --)")
    try:
        extra = env(args.delay_ms)
    except (ValueError, NoCompiler, subprocess.CalledProcessError) as exc:
        print(f"slow_disk: {exc}", file=sys.stderr)
        return 2
    try:
        return subprocess.run(command, env={**os.environ, **extra}, check=False).returncode
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
