"""AgentRunner against real worker processes: answers, failures, timeouts, clean stops."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from baton.adapters.metrics import Counters
from baton.agents.base import MAX_REPLIES, MAX_REPLY_CHARS, AgentFailed, AgentMessage, Turn
from baton.agents.runner import AgentRunner
from baton.core.errors import ConfigError
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)

SAMPLES = "python:tests.agents.sample_agents"
HISTORY = [Turn("a", ("b",)), Turn("c", ("d",))]

CMD_SCRIPT = """\
import json, os, sys, time
req = json.load(sys.stdin)
text = req["message"]["text"]
if text == "fail":
    sys.stderr.write("bad things happened\\n")
    sys.exit(1)
if text == "notjson":
    print("hello")
    sys.exit(0)
if text.startswith("sleep "):
    path = text[len("sleep "):]
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {os.getppid()}")
    os.rename(path + ".tmp", path)
    time.sleep(3600)
replies = {
    "many": ["r"] * 11,
    "long": ["x" * 16001],
    "notlist": 5,
}.get(text, [f"cmd: {text} ({len(req['history'])})"])
print(json.dumps({"replies": replies}))
"""

MakeRunner = Callable[..., AgentRunner]


def msg(text: str, message_id: int = 1) -> AgentMessage:
    return AgentMessage(topic="t", message_id=message_id, text=text, sender="u1")


def gone(pid: int) -> bool:
    """True when no process runs as ``pid`` (a zombie left to init runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def failure(runner: AgentRunner, text: str) -> AgentFailed:
    with pytest.raises(AgentFailed) as info:
        runner.run(msg(text), [])
    return info.value


def worker_pid(runner: AgentRunner) -> int:
    return int(runner.run(msg("pid"), [])[0])


@pytest.fixture
def counters() -> Counters:
    return Counters()


@pytest.fixture
def make_runner(counters: Counters) -> Iterator[MakeRunner]:
    runners: list[AgentRunner] = []

    def make(spec: str, **kwargs: Any) -> AgentRunner:
        runner = AgentRunner(spec, counters=counters, **kwargs)
        runners.append(runner)
        runner.start()
        return runner

    try:
        yield make
    finally:
        for runner in runners:
            runner.stop()


@pytest.fixture
def cmd_spec(tmp_path: Path) -> str:
    script = tmp_path / "cmd_agent.py"
    script.write_text(CMD_SCRIPT)
    return f"cmd:{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


# --- answers --------------------------------------------------------------------------


def test_echo_through_a_real_worker(make_runner: MakeRunner, counters: Counters) -> None:
    runner = make_runner("echo")
    assert runner.run(msg("hi"), HISTORY) == ["echo: hi (earlier turns: 2)"]
    assert runner.run(msg("again"), []) == ["echo: again (earlier turns: 0)"]
    assert counters.get("agent.runs") == 2
    assert counters.get("agent.workers_started") == 1  # the idle worker was reused


def test_a_baton_directory_in_the_working_directory_does_not_shadow_the_package(
    make_runner: MakeRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: `python -m` put the current directory first on the import path, so a
    node started from the parent of a clone (which holds a `baton/` directory) could not
    start an agent worker (`-P` leaves it off)."""
    shadow = tmp_path / "parent-of-a-clone"
    (shadow / "baton").mkdir(parents=True)
    (shadow / "baton" / "__init__.py").write_text("raise ImportError('the shadow')\n")
    monkeypatch.chdir(shadow)
    assert make_runner("echo").run(msg("hi"), []) == ["echo: hi (earlier turns: 0)"]


def test_the_message_kind_reaches_agents_in_real_workers(make_runner: MakeRunner) -> None:
    sticker = AgentMessage(topic="t", message_id=2, text="\U0001f44d", sender="u1", kind="sticker")
    photo = AgentMessage(topic="t", message_id=3, text="", sender="u1", kind="photo")
    assert make_runner(f"{SAMPLES}:kinds").run(sticker, []) == ["sticker: \U0001f44d"]
    echo = make_runner("echo")
    assert echo.run(sticker, HISTORY) == ["echo: [sticker] \U0001f44d (earlier turns: 2)"]
    assert echo.run(photo, []) == ["echo: [photo] (earlier turns: 0)"]
    assert echo.run(msg("hi"), []) == ["echo: hi (earlier turns: 0)"]


def test_cmd_agent_through_a_real_worker(make_runner: MakeRunner, cmd_spec: str) -> None:
    runner = make_runner(cmd_spec)
    assert runner.run(msg("hi"), HISTORY) == ["cmd: hi (2)"]


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("ok", ["ok: hi", "turns: 2"]),
        ("single", ["single: hi"]),
        ("prints", ["fine: hi"]),
    ],
)
def test_python_agents(make_runner: MakeRunner, function: str, expected: list[str]) -> None:
    runner = make_runner(f"{SAMPLES}:{function}", workers=1)
    assert runner.run(msg("hi"), HISTORY) == expected
    assert runner.run(msg("hi"), HISTORY) == expected  # the protocol is still in step


def test_the_largest_valid_answer_fits_the_protocol(make_runner: MakeRunner) -> None:
    runner = make_runner(f"{SAMPLES}:largest")
    replies = runner.run(msg("hi"), [])
    assert replies == ["\U0001f600" * MAX_REPLY_CHARS] * MAX_REPLIES


# --- failures ---------------------------------------------------------------------------


def test_python_agent_that_raises_is_an_error_and_the_worker_stays(
    make_runner: MakeRunner, counters: Counters
) -> None:
    runner = make_runner(f"{SAMPLES}:moody", workers=1)
    pid = worker_pid(runner)
    failed = failure(runner, "raise")
    assert failed.reason == "error"
    assert "ValueError: boom on raise" in str(failed)
    assert worker_pid(runner) == pid
    assert counters.get("agent.failed.error") == 1
    assert counters.get("agent.workers_started") == 1


def test_python_agent_returning_garbage(make_runner: MakeRunner) -> None:
    runner = make_runner(f"{SAMPLES}:garbage")
    failed = failure(runner, "hi")
    assert failed.reason == "garbage"
    assert "not int" in str(failed)


def test_cmd_crash_then_the_next_run_works(
    make_runner: MakeRunner, cmd_spec: str, counters: Counters
) -> None:
    runner = make_runner(cmd_spec, workers=1)
    failed = failure(runner, "fail")
    assert failed.reason == "crash"
    assert "exit status 1" in str(failed)
    assert "bad things happened" in str(failed)
    assert runner.run(msg("next"), []) == ["cmd: next (0)"]
    assert counters.get("agent.failed.crash") == 1
    assert counters.get("agent.workers_started") == 1  # the worker itself was fine


def test_python_exit_is_a_crash_then_the_next_run_works(
    make_runner: MakeRunner, counters: Counters
) -> None:
    runner = make_runner(f"{SAMPLES}:moody", workers=1)
    first = worker_pid(runner)
    failed = failure(runner, "exit")
    assert failed.reason == "crash"
    assert "exit status 3" in str(failed)
    assert gone(first)  # reaped before run() returned
    second = worker_pid(runner)
    assert second != first
    assert counters.get("agent.workers_started") == 2
    assert counters.get("agent.failed.crash") == 1


def test_hang_times_out_and_the_worker_group_is_killed(
    make_runner: MakeRunner, counters: Counters
) -> None:
    runner = make_runner(f"{SAMPLES}:moody", workers=1, timeout_s=1)
    first = worker_pid(runner)
    started = time.monotonic()
    failed = failure(runner, "sleep")
    assert failed.reason == "timeout"
    assert 0.9 <= time.monotonic() - started < 5
    assert gone(first)  # killed and reaped before run() returned
    assert counters.get("agent.workers_killed") == 1
    assert counters.get("agent.failed.timeout") == 1
    assert worker_pid(runner) != first


def test_cmd_hang_kills_the_program_too(
    make_runner: MakeRunner, cmd_spec: str, tmp_path: Path
) -> None:
    runner = make_runner(cmd_spec, workers=1, timeout_s=1)
    pidfile = tmp_path / "sleeper.pid"
    failed = failure(runner, f"sleep {pidfile}")
    assert failed.reason == "timeout"
    program, worker = (int(p) for p in pidfile.read_text().split())
    assert gone(worker)
    wait_for(lambda: gone(program), 5, "the program to be gone", 0.01)
    assert runner.run(msg("next"), []) == ["cmd: next (0)"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("notjson", "not JSON"),
        ("many", "11 replies"),
        ("long", "16001 characters"),
        ("notlist", "not int"),
    ],
)
def test_cmd_garbage(
    make_runner: MakeRunner, cmd_spec: str, counters: Counters, text: str, fragment: str
) -> None:
    runner = make_runner(cmd_spec, workers=1)
    failed = failure(runner, text)
    assert failed.reason == "garbage"
    assert fragment in str(failed)
    assert runner.run(msg("next"), []) == ["cmd: next (0)"]
    assert counters.get("agent.workers_started") == 1
    assert counters.get("agent.failed.garbage") == 1


@pytest.mark.parametrize(("text", "fragment"), [("scribble", "not JSON"), ("flood", "longer")])
def test_broken_protocol_is_garbage_and_the_worker_is_replaced(
    make_runner: MakeRunner, counters: Counters, text: str, fragment: str
) -> None:
    runner = make_runner(f"{SAMPLES}:moody", workers=1)
    first = worker_pid(runner)
    failed = failure(runner, text)
    assert failed.reason == "garbage"
    assert fragment in str(failed)
    assert gone(first)
    assert worker_pid(runner) != first
    assert counters.get("agent.workers_killed") == 1


# --- concurrency ------------------------------------------------------------------------


def _run_in_thread(runner: AgentRunner, text: str) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(runner.run(msg(text), []))
        except AgentFailed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_a_hanging_run_does_not_hold_up_another(make_runner: MakeRunner) -> None:
    runner = make_runner(f"{SAMPLES}:moody", workers=2, timeout_s=2)
    thread, outcome = _run_in_thread(runner, "sleep")
    assert runner.run(msg("hi"), []) == ["ok: hi", "turns: 0"]
    assert not outcome  # the other run still hangs
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], AgentFailed) and outcome[0].reason == "timeout"


def test_waiting_for_a_free_worker_is_not_part_of_the_timeout(
    make_runner: MakeRunner, counters: Counters
) -> None:
    runner = make_runner(f"{SAMPLES}:moody", workers=1, timeout_s=1)
    hanging, hung = _run_in_thread(runner, "sleep")
    wait_for(lambda: counters.get("agent.runs") == 1, 5, "one run counted", 0.01)
    waiting, answered = _run_in_thread(runner, "hi")
    for thread in (hanging, waiting):
        thread.join(10)
        assert not thread.is_alive()
    assert isinstance(hung[0], AgentFailed) and hung[0].reason == "timeout"
    assert answered == [["ok: hi", "turns: 0"]]


# --- start and stop ---------------------------------------------------------------------


def test_stop_leaves_no_process_even_a_sleeping_cmd_child(
    make_runner: MakeRunner, cmd_spec: str, tmp_path: Path, counters: Counters
) -> None:
    runner = make_runner(cmd_spec, workers=2, timeout_s=30)
    pidfile = tmp_path / "sleeper.pid"
    thread, outcome = _run_in_thread(runner, f"sleep {pidfile}")
    wait_for(pidfile.exists, 5, "the pid file", 0.01)
    program, worker = (int(p) for p in pidfile.read_text().split())
    runner.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], AgentFailed) and outcome[0].reason == "stopped"
    assert gone(worker)
    wait_for(lambda: gone(program), 5, "the program to be gone", 0.01)
    assert counters.get("agent.workers_killed") == 1


def test_stop_is_idempotent_and_final(make_runner: MakeRunner, counters: Counters) -> None:
    runner = make_runner(f"{SAMPLES}:moody")
    pid = worker_pid(runner)
    runner.stop()
    assert gone(pid)  # an idle worker exits when its stdin closes, and is reaped
    assert counters.get("agent.workers_killed") == 0
    runner.stop()
    assert failure(runner, "hi").reason == "stopped"
    assert counters.get("agent.failed.stopped") == 1


def test_start_with_a_missing_module_names_the_knob(make_runner: MakeRunner) -> None:
    with pytest.raises(ConfigError) as info:
        make_runner("python:tests.agents.no_such_module:f")
    assert info.value.knob == "agent"
    assert "no_such_module" in str(info.value)


def test_start_with_a_bad_spec_names_the_knob(make_runner: MakeRunner, counters: Counters) -> None:
    with pytest.raises(ConfigError) as info:
        make_runner("bogus")
    assert info.value.knob == "agent"
    assert counters.get("agent.workers_started") == 0


# --- the protocol -------------------------------------------------------------------------


def _worker(spec: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    return subprocess.run(
        [sys.executable, "-m", "baton.agents.worker", spec],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=root,
        timeout=30,
    )


def test_worker_speaks_json_lines() -> None:
    request = {"id": 5, "message": msg("hi").to_json(), "history": [HISTORY[0].to_json()]}
    proc = _worker("echo", json.dumps(request).encode() + b"\n")
    assert proc.returncode == 0
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines == [{"ready": True}, {"id": 5, "replies": ["echo: hi (earlier turns: 1)"]}]


def test_worker_that_cannot_load_says_why() -> None:
    proc = _worker("python:tests.agents.no_such_module:f", b"")
    assert proc.returncode == 2
    (line,) = proc.stdout.splitlines()
    body = json.loads(line)
    assert body["ready"] is False
    assert "no_such_module" in body["error"]


ORPHANING_PARENT = """\
import json, os, subprocess, sys, time
spec, pidfile = sys.argv[1], sys.argv[2]
worker = subprocess.Popen(
    [sys.executable, "-m", "baton.agents.worker", spec],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
)
assert json.loads(worker.stdout.readline()) == {"ready": True}
message = {"topic": "t", "message_id": 1, "text": "sleep " + pidfile, "sender": "u"}
worker.stdin.write(json.dumps({"id": 1, "message": message, "history": []}).encode() + b"\\n")
worker.stdin.flush()
deadline = time.monotonic() + 20
while not os.path.exists(pidfile) and time.monotonic() < deadline:
    time.sleep(0.01)
os._exit(0)  # dies with the worker busy: nobody will close its stdin in time
"""


def test_a_worker_ends_with_the_process_that_started_it(cmd_spec: str, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(ORPHANING_PARENT)
    pidfile = tmp_path / "sleeper.pid"
    root = str(Path(__file__).resolve().parents[2])
    subprocess.run(
        [sys.executable, str(script), cmd_spec, str(pidfile)],
        env={**os.environ, "PYTHONPATH": root},
        cwd=root,
        timeout=30,
        check=True,
    )
    program, worker = (int(p) for p in pidfile.read_text().split())
    try:
        wait_for(lambda: gone(worker) and gone(program), 5, "worker and program gone", 0.01)
    finally:
        if not gone(worker):  # the worker leads its own group: end it, the program too
            os.killpg(worker, signal.SIGKILL)


def test_a_new_environment_reaches_the_next_run_idle_and_busy_workers_alike(
    make_runner: MakeRunner,
) -> None:
    runner = make_runner(f"{SAMPLES}:env", workers=2, env={**os.environ, "API_KEY": "one"})
    assert runner.run(msg("API_KEY"), []) == ["one"]
    runner.set_env({**os.environ, "API_KEY": "two"})
    assert runner.run(msg("API_KEY"), []) == ["two"]  # the idle worker was replaced
    with ThreadPoolExecutor(2) as pool:  # two at once: neither worker is an old one
        answers = list(pool.map(lambda _: runner.run(msg("API_KEY"), []), range(2)))
    assert answers == [["two"], ["two"]]


def test_a_worker_busy_when_the_environment_changes_ends_after_its_run(
    make_runner: MakeRunner, counters: Counters, tmp_path: Path
) -> None:
    runner = make_runner(f"{SAMPLES}:env", workers=1, env={**os.environ, "API_KEY": "one"})
    go = tmp_path / "go"
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(runner.run, msg(f"API_KEY after {go}"), [])
        wait_for(lambda: counters.get("agent.runs") == 1, 30, "the run to start")
        runner.set_env({**os.environ, "API_KEY": "two"})
        go.touch()
        assert busy.result(timeout=30) == ["one"]  # it started with the old one
    assert runner.run(msg("API_KEY"), []) == ["two"]
    assert counters.get("agent.workers_started") == 2
