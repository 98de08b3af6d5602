"""Short chaos campaigns (python -m tools.chaos) as CI runs them: three seeds whose five
faults each, together, cover every kind the schedule draws (kill -9 of the node and of
the whole machine, pauses and isolations past the lease, cuts both ways and one way,
clock jumps, handoffs, a slow and a failing lease store). Any violation the checker
finds fails the test, with the summary and the kept directory's path in the message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.chaos.schedule import KINDS, schedule

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

SEEDS = (2, 4, 10)
FAULTS, EVERY_S, TTL_MS = 5, 2.5, 2000


def test_the_ci_seeds_cover_every_kind_of_fault() -> None:
    drawn = {f.kind for seed in SEEDS for f in schedule(seed, FAULTS, EVERY_S, TTL_MS / 1000)}
    assert drawn == set(KINDS)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_short_campaign_breaks_no_promise(seed: int, tmp_path: Path) -> None:
    args = ["--seed", str(seed), "--faults", str(FAULTS), "--every", str(EVERY_S)]
    proc = subprocess.run(
        [sys.executable, "-m", "tools.chaos", *args, "--ttl-ms", str(TTL_MS), "--json"],
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        cwd=Path(__file__).parents[2],
    )
    print(proc.stderr[-4000:])  # the campaign's fault log, shown by pytest on failure
    assert proc.returncode == 0, proc.stdout[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True and summary["faults"] == FAULTS
    assert summary["posted"] == summary["accepted"] > 50
    assert summary["terms"] >= 2, "the faults moved the role at least once"
    assert not list(tmp_path.glob("baton-chaos-*")), "a clean run leaves nothing behind"
