"""tools.record: reads pytest's summary, stops at the first failed run, and a failed
background pass fails the record too."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

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
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
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
    kept = [Path(p) for p in capsys.readouterr().err.split("(kept: ")[1:]]
    logs = [Path(p.split(")")[0]) for p in map(str, kept)]
    try:
        assert logs and "FAILED tests/x.py::t - boom" in logs[0].read_text()
    finally:
        for log in logs:
            shutil.rmtree(log.parent, ignore_errors=True)


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


def test_a_failed_run_keeps_its_directory_and_whole_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = "print('E   assert 1 == 2'); print('FAILED tests/x.py::t'); raise SystemExit(1)"
    monkeypatch.setattr(record, "SUITE", ["-c", failing])
    run = record.one_run(1)
    assert run.exit_code == 1 and run.failures == ["FAILED tests/x.py::t"]
    assert run.kept is not None
    log = Path(run.kept)
    try:
        assert "E   assert 1 == 2" in log.read_text() and f"kept: {log}" in capsys.readouterr().err
    finally:
        shutil.rmtree(log.parent)


def test_a_passed_run_leaves_no_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(record.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(record, "SUITE", ["-c", "print('1 passed in 0.01s')"])
    run = record.one_run(1)
    assert run.exit_code == 0 and run.kept is None and run.summary == "1 passed"
    assert not list(tmp_path.iterdir())
