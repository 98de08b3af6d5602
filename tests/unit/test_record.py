"""tools.record: reads pytest's summary, stops at the first failed run, and a failed
background pass fails the record too."""

from __future__ import annotations

import json
import threading

import pytest

from tests.waits import wait_for
from tools import record


def test_the_summary_line_is_read_with_or_without_failures() -> None:
    out = "....\n2182 passed in 1189.58s (0:19:49)\n"
    assert record.SUMMARY.findall(out) == [("2182 passed", "1189.58")]
    out = "FAILED tests/x.py::t - boom\n=== 1 failed, 2181 passed in 900.10s ===\n"
    assert record.SUMMARY.findall(out) == [("1 failed, 2181 passed", "900.10")]


@pytest.fixture
def quiet_background(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "BACKGROUND", ["-c", "import time; time.sleep(0.2)"])


def test_the_record_stops_at_the_first_failed_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], quiet_background: None
) -> None:
    codes = iter([0, 1, 0])
    monkeypatch.setattr(record, "one_run", lambda n: record.Run(next(codes), 1.0, "x"))
    assert record.main(["--runs", "3", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and [r["exit_code"] for r in out["runs"]] == [0, 1]


def test_a_background_pass_that_fails_is_recorded_and_the_loop_stops_when_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failing = "print('FAILED tests/x.py::t - boom'); raise SystemExit(3)"
    monkeypatch.setattr(record, "BACKGROUND", ["-c", failing])
    background = record.Background()
    thread = threading.Thread(target=background.run_until_stopped, daemon=True)
    thread.start()
    try:
        wait_for(lambda: background.failed, timeout=60, what="a failed background pass")
    finally:
        background.end()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert background.passes >= 1 and len(background.failed) >= 1
    assert background.failed[0] == "FAILED tests/x.py::t - boom"  # the test, by name


def test_a_failed_background_pass_fails_the_record(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], quiet_background: None
) -> None:
    class Failing(record.Background):
        def run_until_stopped(self) -> None:
            self.passes, self.failed = 1, ["1 failed"]

    monkeypatch.setattr(record, "Background", Failing)
    monkeypatch.setattr(record, "one_run", lambda n: record.Run(0, 1.0, "1 passed"))
    assert record.main(["--runs", "2", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and len(out["runs"]) == 2
    assert out["background"] == {"passes": 1, "failed": ["1 failed"]}
