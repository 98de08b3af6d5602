"""devmesh.free_port: a port handed out is held for the process that picked it, so tests
side by side (and a campaign one of them runs) never get the same one before their
machines bind it (a CI run failed with "address_in_use" on a port two tests picked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from baton.demo import devmesh

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux holds")


def test_a_port_handed_out_is_not_handed_out_again_here(monkeypatch: pytest.MonkeyPatch) -> None:
    first = devmesh.free_port()
    second = devmesh.free_port()
    picks = iter([first, second, first])  # the same ports drawn again, then any
    fallback = devmesh.random.randrange
    monkeypatch.setattr(
        devmesh.random, "randrange", lambda a, b: next(picks, None) or fallback(a, b)
    )
    third = devmesh.free_port()
    assert third not in (first, second)
    assert len({devmesh.free_port() for _ in range(50)} | {first, second, third}) == 53


def test_nor_in_another_process_while_this_one_lives() -> None:
    held = devmesh.free_port()
    code = (
        "import random, sys\n"
        "from baton.demo import devmesh\n"
        f"random.randrange = lambda a, b, _s=iter([{held}]): next(_s, None) or a + 7\n"
        "print(devmesh.free_port())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(out.stdout) != held
