"""python -m tools.record: the flaky-test record. The whole suite N times in a row, each
beside a second suite run over and over as background load; a run that fails ends the
record (a flaky test is a bug: find its race).

    python -m tools.record                       # 5 runs of the README's test command
    python -m tools.record --runs 2 --json       # the record as JSON on stdout

The suite is the README's test command (``python -m pytest -q -n 4``); the background
is the fast loop (every test but the system tests) on 2 workers, started again each
time it ends, for as long as the record runs: both of this machine's cores stay busy
beside the suite. Each run and each background pass gets a temporary directory of its
own, removed after it unless it failed: a failed one is kept, with pytest's whole
output in ``pytest.log`` (its path is printed), so the failure can be read in full and
the machines' logs beside it. Progress goes to stderr; the exit code is 0 when every run
passed, 1 when one failed, 130 on Ctrl-C (both suites are stopped first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["-m", "pytest", "-q", "-n", "4", "-p", "no:cacheprovider"]
BACKGROUND = ["-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "-m", "not system"]
SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed).*) in ([\d.]+)s", re.MULTILINE)


@dataclass
class Run:
    exit_code: int
    seconds: float
    summary: str  # pytest's last line: "2182 passed", "1 failed, 2181 passed"
    failures: list[str] = field(default_factory=list)  # FAILED/ERROR lines
    kept: str | None = None  # a failed run's directory, pytest.log in it


@dataclass
class Background:
    """The background suite's passes while the record ran, and those that failed."""

    passes: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    proc: subprocess.Popen[str] | None = None

    def run_until_stopped(self) -> None:
        while not self.stop.is_set():
            tmp = tempfile.mkdtemp(prefix="baton-record-bg-")
            argv = [sys.executable, *BACKGROUND, f"--basetemp={tmp}/t"]
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, start_new_session=True,
            )  # fmt: skip
            if self.stop.is_set():  # end() may have looked before this pass began
                self._kill(self.proc)
            out, _ = self.proc.communicate()
            if self.stop.is_set() or self.proc.returncode == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            if self.stop.is_set():
                return  # stopped mid-pass: that pass counts for nothing
            self.passes += 1
            if self.proc.returncode != 0:  # which tests, not only how many: it is a flake
                named = failed_lines(out)
                self.failed.append("; ".join(named) if named else last_line(out))
                kept = keep(Path(tmp), out)
                print(
                    f"background pass {self.passes} failed: {self.failed[-1]} (kept: {kept})",
                    file=sys.stderr,
                )

    def end(self) -> None:
        self.stop.set()
        if self.proc is not None:
            self._kill(self.proc)

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: pytest and its workers


def last_line(out: str) -> str:
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def failed_lines(out: str) -> list[str]:
    """pytest's FAILED and ERROR lines (-ra): the tests that failed, and why."""
    return [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]


def keep(tmp: Path, out: str) -> Path:
    """Keep a failed run's directory, pytest's whole output in it; its log's path."""
    log = tmp / "pytest.log"
    log.write_text(out)
    return log


def one_run(number: int) -> Run:
    tmp = Path(tempfile.mkdtemp(prefix="baton-record-"))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *SUITE, f"--basetemp={tmp}/t"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - start
    found = SUMMARY.findall(proc.stdout)
    summary = found[-1][0] if found else last_line(proc.stdout)
    failures = failed_lines(proc.stdout)
    print(f"run {number}: exit {proc.returncode}, {seconds:.0f} s, {summary}", file=sys.stderr)
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    kept = None
    if proc.returncode == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        kept = str(keep(tmp, proc.stdout))
        print(f"  kept: {kept}", file=sys.stderr)
    return Run(proc.returncode, round(seconds, 1), summary, failures, kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=5, help="runs in a row (default 5)")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    background = Background()
    thread = threading.Thread(target=background.run_until_stopped, daemon=True)
    runs: list[Run] = []
    thread.start()
    try:
        for number in range(1, args.runs + 1):
            runs.append(one_run(number))
            if runs[-1].exit_code != 0:
                break
    except KeyboardInterrupt:
        print("interrupted: stopping both suites", file=sys.stderr)
        return 130
    finally:
        background.end()
        thread.join(timeout=60)
    ok = len(runs) == args.runs and all(r.exit_code == 0 for r in runs)
    ok = ok and not background.failed  # a test that fails as load is as flaky
    record = {
        "ok": ok,
        "runs": [asdict(r) for r in runs],
        "seconds": [r.seconds for r in runs],
        "background": {"passes": background.passes, "failed": background.failed},
    }
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        times = ", ".join(f"{r.seconds:.0f} s" for r in runs)
        bg = f"background passes {background.passes}, failed {len(background.failed)}"
        print(f"{'ok' if ok else 'FAILED'}: {len(runs)} run(s): {times}; {bg}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
