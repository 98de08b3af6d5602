"""The demo's and the campaign's run kit where it fails: a start that fails (or is
interrupted) still stops and removes everything, and a late event never breaks a thread."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from baton.demo import Demo
from baton.demo_kit import History, Loader, Run, Watcher

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_threads_that_never_started_stop_quietly_and_close_removes_the_run(
    own_tmp: Path,
) -> None:
    run = Run(["alpha"], 3000)
    assert run.root.parent == own_tmp and oct(run.root.stat().st_mode)[-3:] == "700"
    Loader(run, ["t0"], 10).stop()
    Watcher(run).stop()
    run.close()
    assert not run.root.exists()


def test_a_demo_whose_start_fails_reports_it_and_leaves_nothing(
    own_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Run, before_up: object = None) -> None:
        raise RuntimeError("init on alpha exited 1")

    monkeypatch.setattr(Run, "start", broken)
    steps: list[tuple[str, str]] = []
    summary = Demo(on_step=lambda title, outcome: steps.append((title, outcome))).main()
    assert summary["ok"] is False and "init on alpha exited 1" in summary["error"]
    assert steps[-1] == ("failed", summary["error"])
    assert not list(own_tmp.glob("baton-demo-*"))


def test_an_event_after_close_stays_in_memory(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    history.add("posted", message_id=1)
    history.close()
    history.add("posted", message_id=2)
    assert [e["message_id"] for e in history.of("posted")] == [1, 2]
    assert (tmp_path / "h.jsonl").read_text().count("\n") == 1
