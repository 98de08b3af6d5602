"""The fuzz command (python -m tools.fuzz): a short run finds no crash in any parser, and
a parser that lets an untyped exception out is reported as one (the fuzz can fail)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tools.fuzz.__main__ import fuzz
from tools.fuzz.inputs import inputs
from tools.fuzz.targets import Target, all_targets

pytestmark = pytest.mark.timeout(600)


def test_a_short_run_over_every_parser_finds_no_crash(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tools.fuzz", "--inputs", "1000", "--json"],
        capture_output=True, text=True, timeout=540, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["ok"] is True, doc
    names = {t["target"] for t in doc["targets"]}
    assert names == {t.name for t in all_targets(tmp_path)}
    for t in doc["targets"]:  # the inputs reach both sides of every parser
        assert t["inputs"] == 1000 and t["accepted"] > 0 and t["refused"] > 0, t


def test_an_untyped_exception_is_a_crash_kept_with_its_input(tmp_path: Path) -> None:
    def parse(data: bytes) -> None:
        if data.startswith(b"["):
            raise TypeError("a parser that trusts its input")
        if not data:
            raise ValueError("a clear refusal")

    target = Target("weak", [b"[1]", b"{}"], parse, (ValueError,))
    tally = fuzz(target, 300, 60, 0, tmp_path)
    assert tally.crashes > 0 and tally.kinds == {"TypeError": tally.crashes}
    assert (tmp_path / "weak-TypeError-1.bin").read_bytes().startswith(b"[")
    assert "trusts its input" in (tmp_path / "weak-TypeError-1.txt").read_text()


def test_inputs_are_the_same_for_the_same_seed() -> None:
    a = inputs([b'{"a": [1, 2]}'], random.Random(5))
    b = inputs([b'{"a": [1, 2]}'], random.Random(5))
    assert [a() for _ in range(200)] == [b() for _ in range(200)]
