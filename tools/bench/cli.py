"""Benchmark: how long the quick commands take to start and answer, as a person types
them: `baton --help`, `baton whoami` and `baton status` against a running node of a
fresh home, and `whoami` with the node stopped. Each is a new process (the console
script of this interpreter's environment), timed from spawn to exit, ``--runs`` times;
medians and p95 in ms, and the ratio to a bare `python -c pass` (the floor).

    python -m tools.bench.cli [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL

from baton.demo.devmesh import free_port
from tools.bench.timing import report, summary

BATON = [sys.executable, "-m", "baton"]


def _time(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)
    return (time.perf_counter() - t0) * 1000.0


def measure(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env = {**os.environ, "BATON_HOME": str(Path(tmp) / "home")}
        ports = ["--http", f"127.0.0.1:{free_port()}", "--wire", f"127.0.0.1:{free_port()}"]
        init = [*BATON, "init", "--name", "bench", *ports]
        subprocess.run(init, env=env, check=True, timeout=60, capture_output=True)
        times: dict[str, list[float]] = {"python": [], "help": [], "whoami_stopped": []}
        for _ in range(runs):
            times["python"].append(_time([sys.executable, "-c", "pass"], env))
            times["help"].append(_time([*BATON, "--help"], env))
            times["whoami_stopped"].append(_time([*BATON, "whoami"], env))
        subprocess.run([*BATON, "up", "--detach"], env=env, check=True, timeout=120, stdout=DEVNULL)
        try:
            times |= {"whoami": [], "status": []}
            for _ in range(runs):
                times["whoami"].append(_time([*BATON, "whoami"], env))
                times["status"].append(_time([*BATON, "status"], env))
        finally:
            subprocess.run([*BATON, "down"], env=env, check=False, timeout=120, stdout=DEVNULL)
    result = summary(times)
    floor = result["python_ms_median"]
    for name in ("help", "whoami", "status", "whoami_stopped"):
        result[f"{name}_over_python"] = round(result[f"{name}_ms_median"] / floor, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = {"runs": args.runs, **measure(args.runs)}
    report(result, "CLI start to exit (ms):", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
