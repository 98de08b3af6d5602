"""What the small benchmarks share: busy processes beside a measurement (a loaded host),
medians and p95 of timings, and the report (a table, or one JSON line)."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from tools.bench.pipeline import percentile


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` processes spinning on a core for as long as the block runs."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def summary(times: dict[str, list[float]]) -> dict[str, float]:
    """``<name>_ms_median`` and ``<name>_ms_p95`` of each list of timings (ms)."""
    out: dict[str, float] = {}
    for name, values in times.items():
        out[f"{name}_ms_median"] = round(statistics.median(values), 1)
        out[f"{name}_ms_p95"] = round(percentile(values, 0.95), 1)
    return out


def report(result: dict[str, Any], title: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(title)
    width = max(len(k) for k in result) + 2
    for key, value in result.items():
        print(f"  {key:<{width}} {value}")
