"""The demo's and the campaign's run kit where it fails: a start that fails (or is
interrupted) still stops and removes everything, a late event never breaks a thread, and
a machine's process is killed even when its pidfd cannot be opened."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from baton.demo import devmesh
from baton.demo.kit import History, Loader, Run, Watcher, transcript_loss
from baton.demo.scenario import Demo
from tests.waits import wait_for

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


class Topics:
    """A run whose chat service holds these topics' messages."""

    def __init__(self, **topics: list[tuple[int, int, int]]) -> None:
        # each message: (its id, the message it answers (0: a user's), earlier turns seen)
        self.topics = topics

    def topic(self, topic: str) -> list[dict[str, object]]:
        return [
            {"message_id": mid, "from": "user", "text": f"m{mid}"}
            if not to
            else {
                "message_id": mid,
                "from": "bot",
                "reply_to": to,
                "text": f"echo (earlier turns: {seen})",
            }
            for mid, to, seen in self.topics[topic]
        ]


def test_transcript_loss_counts_turns_missing_from_the_history_not_a_reported_double() -> None:
    whole = [(1, 0, 0), (2, 1, 0), (3, 0, 0), (4, 3, 1)]
    doubled = [*whole, (5, 3, 1)]  # message 3 answered again (an ambiguous send)
    lost_one = [*whole, (5, 0, 0), (6, 5, 1)]  # the third answer saw one earlier turn
    run = Topics(whole=whole, doubled=doubled, lost_one=lost_one)
    assert transcript_loss(run, ["whole"]) == 0  # type: ignore[arg-type]
    assert transcript_loss(run, ["doubled"]) == 0  # type: ignore[arg-type]
    assert transcript_loss(run, ["lost_one"]) == 1  # type: ignore[arg-type]
    assert transcript_loss(run, ["whole", "doubled", "lost_one"]) == 1  # type: ignore[arg-type]


class AnsweringRun:
    """What a Loader needs of a Run: the chat service posts, the send log answers
    only the messages ``answer`` names; it counts how often the log was read."""

    def __init__(self, path: Path) -> None:
        self.history = History(path)
        self.answered: set[int] = set()
        self.reads = 0
        self.chat = self
        self._lock = threading.Lock()
        self._next = 0

    def api(self, path: str, body: object) -> dict[str, int]:
        with self._lock:
            self._next += 1
            return {"message_id": self._next}

    def sends(self) -> list[dict[str, object]]:
        with self._lock:
            self.reads += 1
            return [{"reply_to": m, "outcome": "accepted"} for m in sorted(self.answered)]

    def answer(self, *message_ids: int) -> None:
        with self._lock:
            self.answered.update(message_ids)


def test_a_closed_loop_loader_waits_while_too_many_are_unanswered(tmp_path: Path) -> None:
    run = AnsweringRun(tmp_path / "h.jsonl")
    loader = Loader(run, ["t0", "t1"], 500, max_unanswered=3)  # type: ignore[arg-type]
    loader.start()
    try:
        posted = lambda: len(run.history.of("posted"))  # noqa: E731
        wait_for(lambda: posted() == 3 and run.reads >= 3, 30, "the loader holding at 3")
        assert posted() == 3  # it read the log again and again, and posted nothing more
        run.answer(1)
        wait_for(lambda: posted() == 4, 30, "one more once one is answered")
        reads = run.reads
        wait_for(lambda: run.reads >= reads + 2, 30, "holding again")
        assert posted() == 4
        first_hold = loader.held_s  # the hold that one answer ended
        assert first_hold > 0
    finally:
        loader.stop()
    assert not loader.is_alive() and loader.error is None
    assert loader.held_s > first_hold  # the hold the stop ended counts too
    assert posted() == 4  # stopped while it waited: nothing posted after the stop


def test_an_open_loop_loader_never_reads_the_log(tmp_path: Path) -> None:
    run = AnsweringRun(tmp_path / "h.jsonl")
    loader = Loader(run, ["t0"], 500)  # type: ignore[arg-type]
    loader.start()
    try:
        wait_for(lambda: len(run.history.of("posted")) >= 20, 30, "20 posted")
    finally:
        loader.stop()
    assert run.reads == 0 and loader.held_s == 0


def test_a_machine_whose_pidfd_cannot_be_opened_is_still_killed_if_it_is_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CI met pidfd_open failing with ENOENT (not ESRCH) as a mesh stopped: the stop
    raised, and the chaos campaign failed in its teardown."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = devmesh.start_time(proc.pid)

        def enoent(pid: int) -> int:
            raise FileNotFoundError(2, "No such file or directory")

        monkeypatch.setattr(devmesh.os, "pidfd_open", enoent)
        devmesh.kill_if_same(proc.pid, (started or 0) + 1)  # another process: untouched
        assert proc.poll() is None
        devmesh.kill_if_same(proc.pid, started)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(timeout=30)
